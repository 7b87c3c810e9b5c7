"""How close a rating run comes to the machine: achieved prefill FLOP/s over the peak matmul FLOP/s that torch reaches
on the same device, at the same dtype, measured in the same run (so a noisy, shared machine is compared with itself):

    flop_util = (2 · N · tokens / seconds) / peak,     peak = max over repeats of 2 · n³ / t(n×n @ n×n)

``N`` the parameters every prompt token passes through: the causal LM's parameters less its input embedding (a
lookup) and its output head (computed at the last position only: ``logits_to_keep=1`` in rater=hf, one sampled token
in vLLM), ``tokens`` the tokens the forward passes compute (a response's shared prefix once, plus
its K rule suffixes: ``encore.node.gpu_check.rating_tokens``). On a GPU at bf16 the peak is the device's dense bf16 matmul peak as
reached here (below the datasheet's, which ``gpu_check``'s MFU uses). Used by the engines benchmark
(``experiments/benchmark.py bench=engines``) and ``experiments/gpu_check.py``.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                      seconds: float = 1.0) -> float:
    """Best FLOP/s of an ``n x n`` matmul (default 8192 on a GPU, 1024 on a CPU) over ``seconds`` of repeats."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up: kernels, thread pools
        a @ b
    sync()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def token_params(arch: Any) -> int:
    """``N`` above from an :class:`encore.scale.arch.Arch` of a causal LM (which counts the embedding and the head
    once each, tied or not)."""
    return arch.n_params - 2 * arch.vocab * arch.hidden


def flop_util(n_params: int, tokens: int, seconds: float, peak: float) -> float:
    """``2 · n_params · tokens / seconds / peak``: the share of the measured peak a forward pass reached."""
    return 2 * n_params * tokens / max(seconds, 1e-9) / peak


def describe_peak(device: Any, dtype: torch.dtype, peak: float) -> str:
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "CPU"
    return f"{name}, {str(dtype).removeprefix('torch.')} matmul, {peak / 1e12:.3g} TFLOP/s measured"
