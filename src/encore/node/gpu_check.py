"""The first GPU hour (``python experiments/gpu_check.py``): the paper path's three model stages on random-weight
Llamas of the real 128,256-token vocabulary and the real tokenizers (no hub), scaled up to load a GPU (default: the
Llama-3.2-1B shape, 1.24 B parameters), each measured against what :mod:`encore.scale.placement` planned.

Per stage (rate, train, score): planned bytes (the placement's ``need``) and measured peak
(``torch.cuda.max_memory_allocated`` from before the model is loaded; "n/a on CPU"), seconds, tokens/s and MFU:

    MFU = achieved FLOP/s / peak bf16 FLOP/s,  FLOPs = 2 · N · tokens (inference), 6 · N · tokens (training)

with N the stage's parameter count (meta device) and "tokens" the tokens the forward passes computed (rating: each
response's shared prefix once plus its K rule suffixes). Peak: ``peak_tflops`` or from the device name (H100 SXM /
H200 989, H100 PCIe 756, A100 312 dense bf16 TFLOP/s). Plus bf16 vs fp32 ratings on the same weights (max |Δ|) and,
where vLLM imports on a GPU, ``rater=vllm`` vs ``rater=hf`` (max |Δ|). Checks: every rating finite, |Δ| within
``tolerance``, losses finite, and on a GPU measured ≤ planned (a plan that under-counts is a failed check).

``vllm_kv`` (on a GPU where vLLM imports, first): the GPU's ``total_memory`` and the layout the plan picks for the
70B on a node of eight of it; vLLM started with ``load_format="dummy"`` on one tensor-parallel rank's shape of the 70B
(fewer layers) and its own KV-cache tokens (``num_gpu_blocks · block_size``) beside
:mod:`encore.scale.vllm_memory`'s prediction for the same config, with what its worker measured (weights, activation
peak, CUDA-graph estimate); and the prefix-cache hit rate of the rule prompts grouped by response vs shuffled
(:mod:`encore.node.vllm_check`). Checks: vLLM's KV tokens within ``vllm_kv.tolerance`` of the prediction, the
layout holds one scheduler step, grouped hits more than shuffled.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIE", 756.0), ("H100", 989.0), ("A100", 312.0))  # dense bf16, per GPU


def peak_flops(device: torch.device, override_tflops: float | None) -> tuple[float | None, str]:
    """Peak bf16 FLOP/s of ``device`` and where the number comes from; (None, why) when unknown."""
    if override_tflops:
        return float(override_tflops) * 1e12, f"peak_tflops={override_tflops}"
    if device.type != "cuda":
        return None, "n/a on CPU (set peak_tflops to compute an MFU)"
    name = torch.cuda.get_device_name(device).upper()
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12, f"{torch.cuda.get_device_name(device)}: {tflops:g} TFLOP/s bf16 dense"
    return None, f"unknown peak for {name!r}: set peak_tflops"


@contextmanager
def measured(device: torch.device) -> Iterator[dict[str, Any]]:
    """Wall seconds and (on CUDA) the peak bytes allocated inside the block, into the yielded dict."""
    out: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    yield out
    if device.type == "cuda":
        torch.cuda.synchronize()
        out["measured_bytes"] = int(torch.cuda.max_memory_allocated())
    out["seconds"] = time.perf_counter() - t0


def stage_row(name: str, planned: int, m: dict[str, Any], tokens: int, flops: float, peak: float | None) -> dict:
    s = max(m["seconds"], 1e-9)
    return {"stage": name, "planned_bytes": planned, "measured_bytes": m.get("measured_bytes"), "seconds": s,
            "tokens": tokens, "tokens_per_s": tokens / s, "mfu": flops / s / peak if peak else None}


def _make(node: DictConfig, size: dict | None, **fields: Any) -> Any:
    """``node`` instantiated with ``size`` merged into its ``config`` and ``fields`` set."""
    from hydra.utils import instantiate

    base = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    return instantiate(OmegaConf.merge(base, {**({"config": size} if size else {}), **fields}))


def rating_tokens(prompts: Any, pairs: Any, rules: list) -> tuple[int, int]:
    """(tokens the shared-prefix passes compute, longest prompt) for rating every response of ``pairs``."""
    from encore.rating.tokens import common_prefix

    seqs = prompts.rule_ids(*_responses(pairs), rules)
    computed = sum(c + sum(len(s) - c for s in per) for per in seqs for c in [common_prefix(per)])
    return computed, max(len(s) for per in seqs for s in per)


def _responses(pairs: Any) -> tuple[list[str], list[str]]:
    return ([p for p in pairs["prompt"] for _ in (0, 1)],
            [x for c, r in zip(pairs["chosen"], pairs["rejected"]) for x in (c, r)])


def check_rating(cfg: DictConfig, pairs: Any, rules: list, device: torch.device, size: dict | None,
                 peak: float | None) -> tuple[dict, dict[str, np.ndarray]]:
    """The rater in bf16 (timed, measured), then in fp32 on the same weights; returns the stage row and ratings."""

    from encore.scale.loading import target_gpus

    dev = "cuda" if device.type == "cuda" else "cpu"
    make = lambda dtype: _make(cfg.rater, size, device=dev, dtype=dtype)  # noqa: E731
    rater = make("bfloat16")
    gpus = target_gpus(dev)
    tokens, longest = rating_tokens(rater.prompts, pairs, rules)
    planned = rater.placement(gpus, n_rules=len(rules), seq_len=longest).need
    prompts, responses = _responses(pairs)
    with measured(device) as m:
        rater.load()
        rater.rate(prompts[:1], responses[:1], rules)  # warm-up: kernels, allocator
        t0 = time.perf_counter()
        bf16, _ = rater.rate(prompts, responses, rules)
        rate_s = time.perf_counter() - t0
    arch = rater.arch_info()
    n = arch.n_params
    rater.unload()
    row = stage_row("rate", planned, {**m, "seconds": rate_s}, tokens, 2 * n * tokens, peak)
    row.update(n_params=n, prompts=len(responses) * len(rules), load_and_warmup_seconds=m["seconds"] - rate_s)
    row.update(rating_utilisation(arch, tokens, rate_s, device, torch.bfloat16))
    fp32_rater = make("float32")
    fp32, _ = fp32_rater.rate(prompts, responses, rules)
    out = {"bf16": bf16, "fp32": fp32}
    if cfg.vllm and device.type == "cuda":
        out.update(_vllm_ratings(fp32_rater, cfg, prompts, responses, rules))
    fp32_rater.unload()
    return row, out


def rating_utilisation(arch: Any, tokens: int, seconds: float, device: torch.device, dtype: torch.dtype) -> dict:
    """``flop_util`` of a timed rating run against the matmul peak measured now at its dtype (on a GPU in bf16: the
    device's dense bf16 peak as reached here), as the engines benchmark reports it (:mod:`encore.scale.utilisation`)."""
    from encore.scale.utilisation import describe_peak, flop_util, matmul_peak_flops, token_params

    peak = matmul_peak_flops(device, dtype, seconds=0.5)
    return {"flop_util": flop_util(token_params(arch), tokens, seconds, peak), "matmul_peak_flops": peak,
            "matmul_peak": describe_peak(device, dtype, peak)}


def _vllm_ratings(hf: Any, cfg: DictConfig, prompts: list[str], responses: list[str], rules: list) -> dict:
    """The same weights saved as a model directory and rated by vLLM in process (bf16), or the reason it could not."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        return {"vllm_skipped": f"vllm not importable here ({e}); run in the vLLM environment"}
    from encore.rating.vllm import VLLMRater

    folder = Path(tempfile.mkdtemp(prefix="encore-gpu-check-"))
    hf._model.to(torch.bfloat16).save_pretrained(folder)
    hf.tok.save_pretrained(folder)
    hf.unload()
    v = VLLMRater(model=str(folder), max_length=hf.max_length, dtype="bfloat16",
                  gpu_memory_utilization=float(cfg.vllm_memory), engine_kwargs={"enforce_eager": True})
    values, _ = v.rate(prompts, responses, rules)
    return {"vllm": values}


def check_training(cfg: DictConfig, pairs: Any, n_rules: int, device: torch.device, size: dict | None,
                   peak: float | None, work: Path) -> dict:
    """``cfg.train`` for ``train_steps`` optimiser steps after a one-step warm-up run (compilation, allocator)."""
    import pandas as pd

    from encore.scale.loading import target_gpus

    dev = "cuda" if device.type == "cuda" else "cpu"
    enc = _make(cfg.model, size, device=dev)
    targets = np.random.default_rng(0).uniform(size=(len(pairs), 2, n_rules))
    common = {"progress": False, "val_frac": 0.0, "save_every": 10 ** 9}
    _make(cfg.train, None, max_steps=1, **common).train_model(enc, pairs, targets, "mse", work, "warm-up")
    ft = _make(cfg.train, None, max_steps=int(cfg.train_steps), **common)
    planned = ft.placement(enc, target_gpus(dev)).need
    with measured(device) as m:
        d = ft.train_model(enc, pairs, targets, "mse", work, "timed")
    ids = enc.tokenize(enc.pair_texts(pairs), padding=False)["input_ids"]
    seqs = int(cfg.train_steps) * ft.grad_accum * min(ft.batch_size, len(pairs)) * 2
    tokens = int(seqs * np.mean([len(x) for x in ids]))
    n = enc.arch_info().n_params
    loss = pd.read_csv(d / "train_log.csv")["loss"].to_numpy()
    row = stage_row("train", planned, m, tokens, 6 * n * tokens, peak)
    row.update(n_params=n, steps=int(cfg.train_steps), loss_first=float(loss[0]), loss_last=float(loss[-1]),
               loss_finite=bool(np.isfinite(loss).all()), optim=ft.optim, param_dtype=ft.param_dtype)
    return row


def check_scoring(cfg: DictConfig, pairs: Any, device: torch.device, size: dict | None, peak: float | None) -> dict:
    """The backbone's inference pass over every response (what head scoring and the gate's inputs cost)."""

    from encore.scale.loading import target_gpus

    dev = "cuda" if device.type == "cuda" else "cpu"
    enc = _make(cfg.model, size, device=dev, dtype="bfloat16")
    planned = enc.placement(target_gpus(dev)).need
    texts = enc.pair_texts(pairs)
    with measured(device) as m:
        enc.encode(texts)
    tokens = sum(map(len, enc.token_ids(texts)[0]))
    n = enc.arch_info().n_params
    enc.unload()
    return {**stage_row("score", planned, m, tokens, 2 * n * tokens, peak), "n_params": n}


def check_vllm_kv(cfg: DictConfig, pairs: Any, rules: list, device: torch.device, work: Path) -> dict:
    """``vllm_kv``: the 70B's layout on a node of this GPU, vLLM's own KV cache on one rank's shape (dummy weights)
    beside the plan's, and prefix-cache hit rates grouped vs shuffled (:mod:`encore.node.vllm_check`); on a GPU where
    vLLM imports, else the reason it was skipped."""
    v = cfg.vllm_kv
    if not v.enabled:
        return {"skipped": "vllm_kv.enabled=false"}
    if device.type != "cuda":
        return {"skipped": "n/a on CPU (tests/test_vllm_kv.py runs it on vLLM's CPU build)"}
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        return {"skipped": f"vllm not importable here ({e}); run in the vLLM environment"}
    from encore.node.vllm_check import run_vllm_check
    from encore.scale.loading import model_arch

    arch = model_arch(v.model, None, None, OmegaConf.to_container(v.arch, resolve=True), None, "causal_lm",
                      "vllm_kv")
    seqs = _make(cfg.rater, None).prompts.rule_ids(*_responses(pairs.iloc[: int(v.pairs)]), rules)
    return run_vllm_check(arch, seqs, work, int(v.layers), int(v.max_length), float(v.gpu_memory_utilization))


def vllm_kv_checks(r: dict, tolerance: float) -> dict[str, bool]:
    """The pass/fail lines of :func:`check_vllm_kv`'s report (none when it was skipped)."""
    if "skipped" in r:
        return {}
    got, want = r["vllm_kv_tokens"], r["predicted_kv_tokens"]
    return {f"vLLM's KV cache {got:,} tokens within {tolerance:.0%} of the plan's {want:,}":
            bool(want) and abs(got / want - 1) <= tolerance,
            f"the 70B's layout on {r['layout']['n_gpus']} of this GPU holds one scheduler step": r["layout"]["fits"],
            "grouped rule prompts hit the prefix cache more than shuffled":
            r["hit_rates"]["grouped"] > r["hit_rates"]["shuffled"]}


def run_gpu_check(cfg: DictConfig, work: Path) -> dict[str, Any]:
    """Every check; the report's ``ok`` is False when any failed (see the module docstring)."""
    from encore.run.pipeline import build
    from encore.rules import load_rules

    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda" and device.type != "cuda":
        raise ValueError("device=cuda but no CUDA device is visible; use device=cpu for the smoke mode")
    size = OmegaConf.to_container(cfg.size) if device.type == "cuda" and cfg.size else None
    peak, peak_from = peak_flops(device, cfg.peak_tflops)
    pairs = build(cfg.data).iloc[: int(cfg.n_pairs)].reset_index(drop=True)
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    vllm_kv = check_vllm_kv(cfg, pairs, rules, device, work)  # first: vLLM wants the GPU's memory free
    rate, ratings = check_rating(cfg, pairs, rules, device, size, peak)
    stages = [rate, check_training(cfg, pairs, len(rules), device, size, peak, work),
              check_scoring(cfg, pairs, device, size, peak)]
    tol = cfg.tolerance
    checks = {"ratings finite": bool(np.isfinite(ratings["bf16"]).all() and np.isfinite(ratings["fp32"]).all()),
              "training loss finite": stages[1]["loss_finite"]}
    d_bf16 = float(np.nanmax(np.abs(ratings["bf16"] - ratings["fp32"])))
    checks[f"bf16 vs fp32 max |Δ| {d_bf16:.4f} <= {tol.bf16}"] = d_bf16 <= tol.bf16
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "size": size or "the configs' tiny size", "peak_flops": peak, "peak_from": peak_from,
                              "n_pairs": len(pairs), "n_rules": len(rules), "stages": stages,
                              "bf16_vs_fp32_max_abs": d_bf16}
    if "vllm" in ratings:
        d_v = float(np.nanmax(np.abs(ratings["vllm"] - ratings["fp32"])))
        report["vllm_vs_hf_max_abs"] = d_v
        checks[f"vllm vs hf max |Δ| {d_v:.4f} <= {tol.vllm}"] = d_v <= tol.vllm
    else:
        report["vllm_vs_hf_max_abs"] = None
        report["vllm_skipped"] = ratings.get("vllm_skipped", "n/a on CPU" if device.type != "cuda" else "vllm=false")
    report["vllm_kv"] = vllm_kv
    checks.update(vllm_kv_checks(vllm_kv, float(cfg.vllm_kv.tolerance)))
    for s in stages:
        if s["measured_bytes"] is not None:
            checks[f"{s['stage']}: measured peak <= planned"] = s["measured_bytes"] <= s["planned_bytes"]
    report.update(checks=checks, ok=all(checks.values()))
    return report
