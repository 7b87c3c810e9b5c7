"""How close a rating run comes to the machine: the FLOPs of the work an engine really computed, per second, over the
peak matmul FLOP/s that torch reaches on the same device, at the same dtype, measured in the same run (so a noisy,
shared machine is compared with itself):

    flop_util = F / seconds / peak,     peak = max over repeats of 2 · n³ / t(n×n @ n×n)

    F = Σ over forward chunks [ 2 · N · n  +  4 · L · h · d · (n · c + n (n + 1) / 2)  +  2 · V · H · logits ]

A chunk is ``n`` new tokens of one sequence appended after ``c`` tokens whose keys and values are already there
(a cached prefix). ``N`` the parameters every token passes through (:attr:`FlopShape.body`: the layers and the
final norm; the input embedding is a lookup, no FLOPs); the attention term is QK^T plus AV, 2 · h · d each per key,
over the ``c + j`` positions the ``j``-th new token attends to (causal, itself included; ``h`` query heads of
``d``, a GQA model's shared keys change nothing here) in each of the ``L`` layers; the head (``V x H``) is
charged only for the positions whose logits are computed (``logits``). Each parameter is counted once: a tied
embedding is the head too (:attr:`FlopShape.params`, SmolLM2-135M: 134.5 M, not 162.8 M).

Each engine is charged the chunks it computed, real tokens only:
- rater=hf (:func:`shared_prefix_flops`): a response's shared prefix once (its hidden states only: no head), then
  each of its K rule suffixes after that cached prefix with one position of logits. Padding is not counted as
  work: it is waste the engine chose, reported beside as its share of the positions computed
  (``HFRater.work``).
- vLLM (:func:`cached_prompt_flops`): each prompt's tokens after the prefix blocks its cache reused
  (``RequestOutput.num_cached_tokens``), one position of logits (the sampled token).

On a GPU at bf16 the peak is the device's dense bf16 matmul peak as reached here (below the datasheet's, which
``gpu_check``'s MFU uses). Used by the engines benchmark (``experiments/benchmark.py bench=engines``) and
``experiments/gpu_check.py``. :func:`flop_util` and :func:`token_params` keep the older body-only count
(``2 · N · tokens``) for callers that have no sequence lengths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch


@dataclass(frozen=True)
class FlopShape:
    """The numbers the FLOP count needs: ``body`` parameters every token passes through (embedding and head
    aside), the head ``vocab x hidden``, whether it is tied to the input embedding, and the attention's
    ``layers x heads x head_dim``."""

    body: int
    vocab: int
    hidden: int
    layers: int
    heads: int
    head_dim: int
    tied: bool

    @property
    def params(self) -> int:
        """Every parameter once: the body, the input embedding and, when not tied to it, the head."""
        return self.body + self.vocab * self.hidden * (1 if self.tied else 2)

    @classmethod
    def from_arch(cls, arch: Any, tied: bool) -> "FlopShape":
        """From an :class:`encore.scale.arch.Arch` of a causal LM, whose ``n_params`` comes from a meta-device build
        that counts the embedding and the head as two matrices, tied or not."""
        return cls(token_params(arch), arch.vocab, arch.hidden, arch.n_layers, arch.n_heads, arch.head_dim, tied)

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> "FlopShape":
        """From a loaded causal LM: parameters counted by identity (a tied head is its embedding)."""
        emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        unique = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        tied = head is emb
        c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        heads = int(c.num_attention_heads)
        return cls(unique - emb.numel() - (0 if tied else head.numel()), int(head.shape[0]), int(head.shape[1]),
                   int(c.num_hidden_layers), heads, int(getattr(c, "head_dim", None) or c.hidden_size // heads), tied)


def forward_flops(shape: FlopShape, new: int, cached: int = 0, logits: int = 0) -> int:
    """FLOPs of ``new`` tokens appended after ``cached`` ones, with ``logits`` positions through the head (above)."""
    attended = new * cached + new * (new + 1) // 2  # Σ_j (cached + j), j = 1 .. new
    return (2 * shape.body * new + 4 * shape.layers * shape.heads * shape.head_dim * attended
            + 2 * shape.vocab * shape.hidden * logits)


def shared_prefix_flops(shape: FlopShape, responses: Iterable[tuple[int, list[int]]]) -> int:
    """rater=hf's work: for each response ``(prefix length, [suffix lengths])``, the prefix once without logits,
    then every suffix after it with one position of logits."""
    return sum(forward_flops(shape, p) + sum(forward_flops(shape, s, p, 1) for s in suffixes)
               for p, suffixes in responses)


def cached_prompt_flops(shape: FlopShape, prompts: Iterable[tuple[int, int]]) -> int:
    """vLLM's work: for each prompt ``(length, tokens its prefix cache supplied)``, the rest after them and one
    position of logits."""
    return sum(forward_flops(shape, n - c, c, 1) for n, c in prompts)


def achieved_util(flops: float, seconds: float, peak: float) -> float:
    """``flops / seconds / peak``: the share of the measured peak the computed work reached."""
    return flops / max(seconds, 1e-9) / peak


def matmul_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                      seconds: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best FLOP/s of an ``n x n`` matmul (default 8192 on a GPU, 1024 on a CPU) over ``seconds`` of repeats, at
    the calling thread's torch thread count; ``clock=time.process_time`` times each by the CPU seconds this process
    was given (on a shared CPU: the peak per CPU-second, whatever else runs)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up: kernels, thread pools
        a @ b
    sync()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t0 = clock()
        a @ b
        sync()
        best = min(best, clock() - t0)
    return 2 * n ** 3 / best


def token_params(arch: Any) -> int:
    """``N`` above (:attr:`FlopShape.body`) from an :class:`encore.scale.arch.Arch` of a causal LM, whose meta-device
    count holds the embedding and the head once each, tied or not."""
    return arch.n_params - 2 * arch.vocab * arch.hidden


def flop_util(n_params: int, tokens: int, seconds: float, peak: float) -> float:
    """``2 · n_params · tokens / seconds / peak``: the body-only count, without attention or head (callers that
    know the sequence lengths use :func:`shared_prefix_flops` / :func:`cached_prompt_flops` and
    :func:`achieved_util`)."""
    return achieved_util(2 * n_params * tokens, seconds, peak)


def describe_peak(device: Any, dtype: torch.dtype, peak: float) -> str:
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "CPU"
    threads = "" if torch.device(device).type == "cuda" else f" on {torch.get_num_threads()} thread(s)"
    return f"{name}, {str(dtype).removeprefix('torch.')} matmul{threads}, {peak / 1e12:.3g} TFLOP/s measured"
