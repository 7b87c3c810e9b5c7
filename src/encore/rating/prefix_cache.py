"""The prefix KV cache handed to rater=hf's suffix pass, repeated K times into a buffer with room for the suffixes.

transformers' own path copies each layer's prefix keys and values twice per suffix pass: once to repeat them for the
K rules (``DynamicCache.batch_repeat_interleave``) and once more when the suffix pass appends its own keys
(``DynamicLayer.update``'s ``torch.cat``). Here each layer's buffer is allocated once at its final length, the prefix
is broadcast into it (one copy) and the suffix's keys are written into the room left after it, so attention reads a
tensor of the same values and the same layout as ``torch.cat``'s and every rating stays bit for bit the same
(``tests/test_hf_rater.py``), with one copy of the cache fewer (issue 36; ``bench.breakdown=true`` shows the
copies' share).

Only transformers' plain :class:`~transformers.cache_utils.DynamicLayer` is replaced; a sliding-window, quantised or
other layer keeps transformers' own repeat (read from transformers 5.23's ``cache_utils``: ``DynamicLayer.update``
concatenates along dim -2 and ``get_seq_length`` is ``keys.shape[-2]``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A :class:`DynamicLayer` whose keys and values are views of buffers allocated at their final length."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, repeats: int, room: int) -> None:
        super().__init__()
        B, H, P, D = keys.shape
        self._bufs = []
        for src in (keys, values):
            buf = torch.empty((B * repeats, H, P + room, src.shape[-1]), dtype=src.dtype, device=src.device)
            buf.view(B, repeats, H, P + room, src.shape[-1])[:, :, :, :P].copy_(src[:, None])
            self._bufs.append(buf)
        self._filled = P
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.keys, self.values = (b[..., :P, :] for b in self._bufs)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._filled + key_states.shape[-2]
        if end > self._bufs[0].shape[-2]:  # more than the room: transformers' own concatenation
            return super().update(key_states, value_states, *args, **kwargs)
        for buf, new in zip(self._bufs, (key_states, value_states)):
            buf[..., self._filled:end, :].copy_(new)
        self._filled = end
        self.keys, self.values = (b[..., :end, :] for b in self._bufs)
        return self.keys, self.values


def repeat_with_room(cache: Any, repeats: int, room: int) -> Any:
    """``cache`` (a prefix's :class:`~transformers.DynamicCache`, batch B) repeated ``repeats`` times along the batch
    (row ``b * repeats + k`` continues prefix ``b``, as ``batch_repeat_interleave``) with ``room`` positions after
    each prefix for the suffix pass. In place; returns the cache."""
    layers = getattr(cache, "layers", None)
    if layers is None or any(type(layer) is not DynamicLayer or not layer.is_initialized for layer in layers):
        cache.batch_repeat_interleave(repeats)
        return cache
    cache.layers = [PreallocatedLayer(layer.keys, layer.values, repeats, room) for layer in layers]
    return cache
