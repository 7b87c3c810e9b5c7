"""Where rater=hf's time goes on a CPU, for ``bench=engines bench.breakdown=true`` (issue 36).

Two measurements of the same ``rate`` call, so that the numbers in ``benchmarks/engines.py``'s docstring come from a
command rather than from a one-off script:

- :func:`linear_rate`: the CPU seconds the model's ``nn.Linear`` layers take (forward hooks reading
  ``time.process_time``, which a shared machine's other jobs do not inflate) and the FLOPs they compute, padding
  rows included, so their rate can be set against the matmul peak per CPU-second measured in the same run;
- :func:`operator_shares`: torch's profiler over the call, each operator's self time put in one of
  :data:`CATEGORIES` (the profiler's times are wall-clock: on a loaded machine each operator's time grows alike, so
  the shares hold where the rates would not).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

# operator name -> category; the first category whose names match wins, "other operators" takes the rest
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("matmuls (linear layers, LM head)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("attention (SDPA kernel)", ("scaled_dot_product", "flash_attention")),
    ("copies (KV cache repeated K times and concatenated, rotate_half)", ("aten::cat", "aten::copy_",
                                                                          "aten::repeat_interleave",
                                                                          "aten::index_select", "aten::clone")),
    ("elementwise (RMSNorm, RoPE, SiLU, residuals)", ("aten::mul", "aten::add", "aten::silu", "aten::pow",
                                                       "aten::neg", "aten::rsqrt", "aten::mean", "aten::sub",
                                                       "aten::div", "aten::where", "aten::sum", "aten::softmax",
                                                       "aten::_softmax")),
]
OTHER = "other operators"


def category(op: str) -> str:
    for name, keys in CATEGORIES:
        if any(k == op or (not k.startswith("aten::") and k in op) for k in keys):
            return name
    return OTHER


def linear_rate(model: Any, call: Callable[[], Any]) -> dict[str, float]:
    """CPU seconds and FLOPs of every ``nn.Linear`` forward during ``call()``, and the CPU seconds of the whole call."""
    import torch

    spent = {"s": 0.0, "flops": 0, "calls": 0}
    started: dict[int, float] = {}

    def pre(mod: Any, args: tuple) -> None:
        started[id(mod)] = time.process_time()

    def post(mod: Any, args: tuple, out: Any) -> None:
        spent["s"] += time.process_time() - started.pop(id(mod))
        rows = args[0].numel() // mod.in_features
        spent["flops"] += 2 * rows * mod.in_features * mod.out_features
        spent["calls"] += 1

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    hooks = [h for m in linears for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        cpu = time.process_time()
        call()
        total = time.process_time() - cpu
    finally:
        for h in hooks:
            h.remove()
    return {"linear_cpu_s": spent["s"], "linear_flops": float(spent["flops"]), "linear_calls": spent["calls"],
            "call_cpu_s": total, "linear_share": spent["s"] / total if total else 0.0}


def operator_shares(call: Callable[[], Any]) -> dict[str, float]:
    """Each category's share of the operators' self time during ``call()`` (torch's CPU profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    per: Counter = Counter()
    for e in prof.key_averages():
        per[category(e.key)] += e.self_cpu_time_total
    total = sum(per.values()) or 1
    return {name: per[name] / total for name, _ in CATEGORIES + [(OTHER, ())]}


def breakdown(model: Any, call: Callable[[], Any], peak_cpu: float) -> dict[str, Any]:
    """Both measurements; the linear layers' FLOPs per CPU-second over ``peak_cpu`` (the matmul peak per
    CPU-second of the same run) as ``linear_util``."""
    out: dict[str, Any] = linear_rate(model, call)
    out["linear_util"] = out["linear_flops"] / out["linear_cpu_s"] / peak_cpu if out["linear_cpu_s"] else 0.0
    out["shares"] = operator_shares(call)
    return out


def lines(b: dict[str, Any]) -> list[str]:
    """What the benchmark prints."""
    rows = [f"breakdown: linear layers {b['linear_cpu_s']:.1f} of {b['call_cpu_s']:.1f} CPU s "
            f"({b['linear_share']:.0%}, {b['linear_calls']} calls), {b['linear_flops'] / b['linear_cpu_s'] / 1e9:.0f} "
            f"GFLOP/s per CPU-second with padding rows = {b['linear_util']:.2f} of the matmul peak per CPU-second"]
    rows += [f"breakdown: {share:6.1%}  {name}" for name, share in b["shares"].items()]
    return rows
