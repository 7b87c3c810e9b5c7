import numpy as np
import pytest
import torch
from torch.testing import assert_close

from encore.backbone import Encoder, pool
from encore.data import load_demo
from encore.heads import RidgeHeads, embed_pairs

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}


def test_ridge_heads_recover_linear_targets_and_mask_missing():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 2, 8))
    true_w = rng.normal(size=(8, 3))
    y = 0.5 + 0.05 * (emb @ true_w) + 0.01 * rng.normal(size=(300, 2, 3))  # (300, 2, 3), linear + noise
    y_missing = y.copy()
    y_missing[:50, :, 2] = np.nan
    heads = RidgeHeads(alphas=(1e-3, 1.0, 1e3), seed=0).fit(emb, y_missing)
    pred = heads.predict(emb)
    assert pred.shape == (300, 2, 3)
    corr = [np.corrcoef(pred[..., k].ravel(), y[..., k].ravel())[0, 1] for k in range(3)]
    assert min(corr) > 0.98
    assert np.isfinite(heads.W).all()


def test_ridge_rejects_bad_config():
    with pytest.raises(ValueError, match="train.alphas"):
        RidgeHeads(alphas=(0.0,))


def test_last_token_pooling_is_padding_side_invariant():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(h, right, "last").ravel().tolist() == [1.0, 7.0]
    assert pool(h, left, "last").ravel().tolist() == [3.0, 7.0]
    assert_close(pool(h, right, "mean").ravel(), torch.tensor([0.5, 5.5]))


def test_encoder_batching_does_not_change_embeddings_and_cache_hits(tmp_path):
    pairs = load_demo("eval").iloc[:12]
    enc = Encoder("tiny", tokenizer="embedded:all-MiniLM-L6-v2", config=TINY, device="cpu", dtype="float32",
                  batch_size=5, pooling="mean")
    a, hit_a = embed_pairs(pairs, enc, tmp_path, progress=False)
    enc1 = Encoder("tiny", tokenizer="embedded:all-MiniLM-L6-v2", config=TINY, device="cpu", dtype="float32",
                   batch_size=1, pooling="mean")
    single = enc1.encode([f"{pairs.loc[0, 'prompt']}\n\nAssistant: {pairs.loc[0, 'chosen']}"])
    assert_close(torch.from_numpy(a[0, 0]), torch.from_numpy(single[0]), atol=1e-4, rtol=1e-4)
    b, hit_b = embed_pairs(pairs, enc1, tmp_path, progress=False)  # batch size is not part of the key
    assert (hit_a, hit_b) == (False, True)
    np.testing.assert_array_equal(a, b)
