"""How long each stage of an experiment takes, estimated from what it computes: the standard dense-transformer count
of ``2 · N`` FLOPs per token for a forward pass and ``6 · N`` for forward and backward (``N`` parameters; attention's
quadratic term and gradient checkpointing's recomputation left out, as in the usual MFU definition), divided by the
GPUs that compute at once, each at ``mfu`` of its dense bf16 peak:

    hours = FLOPs / (gpus_computing · peak_tflops · 1e12 · mfu) / 3600

``gpus_computing`` is not the GPUs a stage holds: a ``device_map`` copy spread over 4 GPUs runs its layers in
sequence, so one GPU computes at a time and its replicas are what multiply throughput; a vLLM copy computes on all
its tensor-parallel GPUs at once; each training process computes on its own GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2
TRAINING_FLOPS_PER_PARAM_TOKEN = 6


@dataclass(frozen=True)
class Cost:
    """One stage's work: ``tokens`` through a model of ``n_params``, ``flops`` in all, on ``gpus`` computing GPUs."""

    tokens: int
    flops: float
    gpus: int
    hours: float | None  # None: no peak known (name the GPU, or set plan.peak_tflops)
    how: str = ""

    def line(self, mfu: float, peak: float | None) -> str:
        h = self.hours or 0.0
        when = f"{h:,.1f} h" if h >= 1 else f"{h * 60:.1f} min"
        at = (f"{when} on {self.gpus} computing GPU(s) at MFU {mfu:g} of {peak:g} TFLOP/s"
              if self.hours is not None else "hours: name the GPU (plan.gpus=8xH100) or set plan.peak_tflops")
        return f"{self.tokens:,} tokens -> {self.flops:.3g} FLOPs -> {at}" + (f" [{self.how}]" if self.how else "")


def hours(flops: float, gpus: int, peak_tflops: float | None, mfu: float) -> float | None:
    """``flops / (gpus · peak_tflops · 1e12 · mfu) / 3600``; None without a peak."""
    if peak_tflops is None or gpus < 1:
        return None
    if not 0 < mfu <= 1:
        raise ValueError(f"plan.mfu={mfu}: a share of the peak, in (0, 1] (0.4 is a good dense-bf16 run)")
    return flops / (gpus * peak_tflops * 1e12 * mfu) / 3600


def inference(n_params: int, tokens: int, gpus: int, peak: float | None, mfu: float, how: str = "") -> Cost:
    """A forward pass over ``tokens``: ``2 · n_params · tokens`` FLOPs."""
    flops = float(INFERENCE_FLOPS_PER_PARAM_TOKEN) * n_params * tokens
    return Cost(int(tokens), flops, gpus, hours(flops, gpus, peak, mfu), how)


def training(n_params: int, tokens: int, gpus: int, peak: float | None, mfu: float, how: str = "") -> Cost:
    """Forward and backward over ``tokens``: ``6 · n_params · tokens`` FLOPs."""
    flops = float(TRAINING_FLOPS_PER_PARAM_TOKEN) * n_params * tokens
    return Cost(int(tokens), flops, gpus, hours(flops, gpus, peak, mfu), how)


def training_sequences(n_pairs: int, epochs: float, val_frac: float, max_steps: int | None, batch_size: int,
                       grad_accum: int, processes: int) -> int:
    """Sequences a fine-tuning run passes (2 per pair): ``max_steps · grad_accum · batch_size · processes · 2`` when
    the steps are fixed, else ``epochs · n_pairs · (1 - val_frac) · 2``."""
    if max_steps:
        return int(max_steps * grad_accum * batch_size * max(processes, 1) * 2)
    return int(round(epochs * n_pairs * (1 - val_frac))) * 2
