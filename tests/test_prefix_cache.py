"""rater=hf's suffix-pass cache (:mod:`encore.rating.prefix_cache`) against transformers' own path on real
``DynamicCache`` objects: the same keys and values, bit for bit and in the same layout, as
``batch_repeat_interleave`` followed by ``DynamicLayer.update``'s concatenation; more suffix than room falls back to
that concatenation; layers of other kinds keep transformers' repeat. The ratings themselves are pinned on SmolLM2 in
``tests/test_hf_rater.py`` (slow)."""

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from encore.rating.prefix_cache import PreallocatedLayer, repeat_with_room


def _prefix_cache(B=3, H=2, P=5, D=4, layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cache = DynamicCache()
    for i in range(layers):
        cache.update(torch.randn(B, H, P, D, generator=g), torch.randn(B, H, P, D, generator=g), i)
    return cache


def test_the_repeated_cache_with_room_equals_transformers_repeat_and_concatenation():
    K, S = 4, 3
    ours, theirs = repeat_with_room(_prefix_cache(), K, S), _prefix_cache()
    theirs.batch_repeat_interleave(K)
    assert all(isinstance(layer, PreallocatedLayer) for layer in ours.layers)
    assert ours.get_seq_length() == theirs.get_seq_length() == 5
    g = torch.Generator().manual_seed(1)
    for i in range(2):
        k, v = torch.randn(3 * K, 2, S, 4, generator=g), torch.randn(3 * K, 2, S, 4, generator=g)
        a, b = ours.update(k, v, i), theirs.update(k, v, i)
        for x, y in zip(a, b):
            assert torch.equal(x, y) and x.stride() == y.stride() and x.is_contiguous()
    assert ours.get_seq_length() == 5 + S and ours.get_mask_sizes(1, 0) == theirs.get_mask_sizes(1, 0)


def test_more_suffix_than_room_falls_back_to_concatenation():
    cache = repeat_with_room(_prefix_cache(), 2, 1)
    k = torch.ones(6, 2, 3, 4)
    keys, _ = cache.update(k, k, 0)
    assert keys.shape == (6, 2, 8, 4) and torch.equal(keys[..., 5:, :], k)


def test_other_layer_kinds_keep_transformers_repeat():
    cache = _prefix_cache()

    class Other(DynamicLayer):
        pass

    odd = Other()
    odd.update(cache.layers[1].keys, cache.layers[1].values)
    cache.layers[1] = odd
    repeat_with_room(cache, 2, 3)
    assert not any(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
    assert cache.layers[0].keys.shape[0] == 6 and cache.layers[1].keys.shape[0] == 6
