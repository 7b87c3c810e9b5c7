"""``rater=hf`` vs in-process ``rater=vllm`` on the same trained model (SmolLM2-135M-Instruct), the same HH-RLHF
responses and rules, in one run: ratings per second, the share of the machine each reaches (``flop_util``: the FLOPs
each engine computed over the matmul peak measured in the same run, :mod:`encore.scale.utilisation`) and the largest
rating difference. With ``bench.background=N`` the hf half runs again beside N busy processes (a shared machine) and
prints its loaded line; ``bench.layouts=[1x2,2x1]`` times rater=hf as P processes x T threads, quiet and (with a
background) loaded (:mod:`benchmarks.layouts`). Where vLLM does not import (the CI environment), the hf half runs
and the vLLM fields say ``unavailable``. The final line:

    hf_per_s=… vllm_per_s=… hf_flop_util=… vllm_flop_util=… max_abs_diff=… hf_loaded_share=… hf_pad_share=…
    hf_cpu_flop_util=…

``hf_cpu_flop_util`` (CPU only) divides by the CPU seconds the rating process was given and compares with the matmul
peak per CPU-second: on a machine shared with other jobs it says how close the engine comes when it runs, which the
wall-clock ``hf_flop_util`` cannot (its peak and its rating see different moments of the others' load).

rater=hf runs on ``bench.threads`` threads (auto: the per-process threads :mod:`encore.scale.cpu_layout` picks, one
on a CPU) and the peak is measured on as many. ``hf_pad_share``: padding positions over all positions its passes
computed (not counted as work). vLLM is charged the tokens its prefix cache did not supply (``num_cached_tokens`` of
an untimed rerun from an empty cache).

Where rater=hf's time goes on a CPU: ``bench.breakdown=true`` (:mod:`benchmarks.breakdown`) prints it. Measured
2026-12-08 on this project's 2-core machine, quiet (load average 0.8 at the start), the default 16 pairs x 2
responses x 10 rules = 320 ratings, one thread (``python experiments/benchmark.py bench=engines bench.background=2
bench.breakdown=true bench.vllm=false``): quiet ``hf_flop_util=0.541``, loaded share 0.642, and

    linear layers (CPU seconds by forward hooks)   19.1 of 28.6 CPU s (67 %), 169 GFLOP/s per CPU-second with the
                                                   padding rows, 0.86 of the matmul peak per CPU-second
    operators' self time (torch profiler):
      matmuls (linear layers, LM head)             69 %
      attention (SDPA flash kernel)                12 %   over padded prefixes with a mask: no causal block skip
      copies (cache repeat, rotate_half's cat)      5 %
      elementwise (RMSNorm, RoPE, SiLU, residuals) 13 %
      other operators                               1 %
    padding (positions computed for no token)      hf_pad_share 0.088 (prefixes padded within batches of 4
                                                   sorted by length; suffixes padded to the longest rule)

The matmuls themselves run close to the peak (0.86 per CPU-second, counting padding rows). An earlier reading that
they ran "well below MKL's peak" came from the profiler's wall-clock times on a loaded machine. What remains is
elementwise work, attention and padding, and removing any of them changes the arithmetic. Prefixes without padding
(``rater.batch_size=1`` against 4, on the 6 pinned responses of ``tests/test_hf_rater.py``) move ratings by 4.8e-6.
Compiling the norms and MLPs with ``torch.compile`` gave 1.07x and moved them by 5.6e-6. Both are above the 1e-6
that rating stays within, so neither is used.

Changes that keep the ratings bit for bit:
- GQA inside SDPA's kernel, 1.25x (main's path 26.3 CPU s, then 21.1, on 160 ratings in one process at load
  average 5-6; max |diff| 0.0);
- the suffix pass's cache allocated once at its final length (:mod:`encore.rating.prefix_cache`): 3.5% fewer CPU
  seconds in an A/B in one process, max |diff| 0.0.

Quiet runs of the default command on 2026-12-08 gave ``hf_flop_util`` 0.49 to 0.60 over 7 runs (median 0.567). The
spread comes mostly from the peak measurement, which went from 0.177 to 0.211 TFLOP/s between runs. The issue's
0.385 was measured at ``bench.n_pairs=8`` under load 2 to 3.

Layouts (``bench.n_pairs=8 bench.background=2 bench.layouts=[1x2,2x1]``, load average 14-17 from other jobs
throughout): 2 processes x 1 thread 1.82 ratings/s vs 1 process x 2 threads 0.53 (3.4x) with no busy process of
ours, 1.12 vs 0.264 (4.2x) beside 2 busy ones; hence :mod:`encore.scale.cpu_layout`'s choice.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from benchmarks.bench import _best_of, _plain

UNAVAILABLE = "unavailable"
FIELDS = [("hf_per_s", ".3g"), ("vllm_per_s", ".3g"), ("hf_flop_util", ".3g"), ("vllm_flop_util", ".3g"),
          ("max_abs_diff", ".2e"), ("hf_loaded_share", ".3g"), ("hf_pad_share", ".3g"), ("hf_cpu_flop_util", ".3g")]


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, float) else str(v)


def engines_benchmark(data_path: str, rules: list, model: str = "smollm2", n_pairs: int = 16, dtype: str = "auto",
                      batch_size: int = 4, max_length: int = 2048, repeats: int = 1, vllm: bool = True,
                      engine_kwargs: dict | None = None, threads: Any = "auto", background: int = 0,
                      layouts: list | None = None, breakdown: bool = False) -> dict[str, Any]:
    from encore.data.pairs import load_pairs
    from encore.node.gpu_check import rating_tokens
    from encore.rating.hf import WORK, HFRater
    from encore.rm.backbone import pick_dtype
    from encore.rules import load_rules
    from encore.scale.cpu_layout import for_rater
    from encore.scale.utilisation import FlopShape, achieved_util, describe_peak, matmul_peak_flops
    from benchmarks.layouts import busy, parse, time_layout

    rules = load_rules(_plain(rules))
    pairs = load_pairs(path=data_path, format="hh", subset_field=None, empty="drop", limit=n_pairs)
    prompts = [p for p in pairs["prompt"] for _ in (0, 1)]
    responses = [x for c, r in zip(pairs["chosen"], pairs["rejected"]) for x in (c, r)]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = str(pick_dtype(dtype, torch.device(device))).removeprefix("torch.")  # auto: bf16 on a GPU, fp32 on a CPU
    kw = dict(model=model, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length)
    hf = HFRater(**kw)
    if device == "cpu":
        layout = for_rater("auto", hf)
        n_threads = layout.threads if str(threads) == "auto" else int(threads)
        torch.set_num_threads(n_threads)
        print(f"{layout.line()}; this process rates on {n_threads} thread(s)")
    hf.load()
    torch_dtype = next(hf._model.parameters()).dtype
    tokens, longest = rating_tokens(hf.prompts, pairs, rules)
    shape = FlopShape.from_model(hf._model)
    hf.rate(prompts[:1], responses[:1], rules)  # warm-up

    def timed() -> tuple[float, np.ndarray, dict]:
        hf.work = dict.fromkeys(WORK, 0)
        cpu = time.process_time()
        t, (values, _) = _best_of(lambda: hf.rate(prompts, responses, rules), 1)
        return t, values, {**hf.work, "cpu_s": time.process_time() - cpu}

    t_hf, hf_values, work = min((timed() for _ in range(max(1, repeats))), key=lambda r: r[0])
    peak = matmul_peak_flops(device, torch_dtype)
    # on a CPU shared with other jobs: the work per CPU-second this process was given, over the peak per CPU-second
    peak_cpu = matmul_peak_flops(device, torch_dtype, clock=time.process_time) if device == "cpu" else None
    n = len(responses) * len(rules)
    res: dict[str, Any] = {"model": model, "ratings": n, "prefill_tokens": tokens, "longest_prompt": longest,
                           "n_params": shape.params, "body_params": shape.body, "tied": shape.tied, "dtype": dtype,
                           "threads": torch.get_num_threads(), "peak_flops": peak,
                           "peak": describe_peak(device, torch_dtype, peak), "load": _load(),
                           "hf_s": t_hf, "hf_per_s": n / t_hf, "hf_flops": work["flops"],
                           "hf_flop_util": achieved_util(work["flops"], t_hf, peak),
                           "hf_pad_share": work["padding"] / (work["padding"] + work["tokens"]),
                           "hf_cpu_s": work["cpu_s"], "peak_cpu_flops": peak_cpu or UNAVAILABLE,
                           "hf_cpu_flop_util": (achieved_util(work["flops"], work["cpu_s"], peak_cpu) if peak_cpu
                                                else UNAVAILABLE),
                           "hf_loaded_share": UNAVAILABLE, "vllm_s": UNAVAILABLE, "vllm_per_s": UNAVAILABLE,
                           "vllm_flop_util": UNAVAILABLE, "max_abs_diff": UNAVAILABLE, "background": int(background)}
    print(f"{model}: {shape.params / 1e6:.1f} M parameters ({shape.body / 1e6:.1f} M per token, embedding "
          f"{'tied to the head' if shape.tied else 'and head'} aside), {dtype}, {device}; {len(pairs)} HH-RLHF pairs "
          f"x 2 responses x {len(rules)} rules = {n} ratings; {tokens:,} tokens computed (prefix once), longest "
          f"prompt {longest}, {work['padding']:,} padding positions besides; load average {res['load']}", flush=True)
    print(f"peak: {res['peak']}")
    print(f"quiet: rater=hf (batch {batch_size}, prefix KV reuse): {t_hf:.1f}s, hf_per_s={res['hf_per_s']:.3g} "
          f"hf_flop_util={res['hf_flop_util']:.3g}" + (f"; per CPU-second it was given: {work['cpu_s']:.1f} CPU s, "
          f"hf_cpu_flop_util={res['hf_cpu_flop_util']:.3g} of {peak_cpu / 1e12:.3g} TFLOP/s" if peak_cpu else ""),
          flush=True)
    if breakdown:
        _breakdown(res, hf, lambda: hf.rate(prompts, responses, rules), peak_cpu)
    if background:
        with busy(background):
            t_loaded, _, w = min((timed() for _ in range(max(1, repeats))), key=lambda r: r[0])
            peak_loaded = matmul_peak_flops(device, torch_dtype)
        res.update(hf_loaded_s=t_loaded, hf_loaded_per_s=n / t_loaded, hf_loaded_share=t_hf / t_loaded,
                   hf_loaded_flop_util=achieved_util(w["flops"], t_loaded, peak), peak_loaded_flops=peak_loaded,
                   load_loaded=_load())
        print(f"loaded ({background} busy processes beside it; load average {res['load_loaded']}): rater=hf "
              f"{res['hf_loaded_s']:.1f}s, hf_per_s={res['hf_loaded_per_s']:.3g} "
              f"hf_flop_util={res['hf_loaded_flop_util']:.3g} (against the quiet peak; the peak loaded: "
              f"{peak_loaded / 1e12:.3g} TFLOP/s), hf_loaded_share={res['hf_loaded_share']:.3g} of quiet", flush=True)
    hf.unload()
    res["layouts"] = _layouts(layouts or [], background, kw, prompts, responses, rules, n, busy, parse, time_layout)
    why = _vllm_half(res, vllm, model, dtype, max_length, engine_kwargs, prompts, responses, rules, hf_values,
                     repeats, shape)
    print(f"rater=vllm (in process, prefix caching): " + (f"{res['vllm_s']:.1f}s" if not why else why))
    print(" ".join(f"{k}={_fmt(res[k], spec)}" for k, spec in FIELDS))
    return res


def _breakdown(res: dict, hf: Any, call: Any, peak_cpu: float | None) -> None:
    from benchmarks.breakdown import breakdown, lines

    if peak_cpu is None:
        print("breakdown: CPU only (bench.breakdown=true times operators on the CPU)")
        return
    res["breakdown"] = breakdown(hf._model, call, peak_cpu)
    print("\n".join(lines(res["breakdown"])), flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _layouts(layouts: list, background: int, kw: dict, prompts: list[str], responses: list[str], rules: list,
             n: int, busy: Any, parse: Any, time_layout: Any) -> list[dict]:
    rows = []
    for condition, extra in [("quiet", 0)] + ([(f"{background} busy", background)] if background else []):
        with busy(extra):
            for spec in layouts:
                p, t = parse(spec)
                s = time_layout(p, t, kw, prompts, responses, rules)
                rows.append({"layout": f"{p}x{t}", "condition": condition, "seconds": s, "per_s": n / s,
                             "load": _load()})
                print(f"layout {p}x{t} ({condition}; load average {rows[-1]['load']}): {s:.1f}s, {n / s:.3g} "
                      "ratings/s", flush=True)
    return rows


def _bind_vllm_like_hf(threads: int) -> str:
    """On a CPU vLLM binds its OpenMP threads itself (vLLM 0.32 ``utils/ompmultiprocessing.py``: with
    ``VLLM_CPU_OMP_THREADS_BIND=auto`` one thread per physical core of a NUMA node, less the cores it reserves for its
    scheduler), so its thread count is not rater=hf's and the peak measured at rater=hf's count would not be its own.
    Unless the user set the binding, it is set here to as many of this process's CPUs as rater=hf's threads, and the
    binding is printed with the result."""
    key = "VLLM_CPU_OMP_THREADS_BIND"
    if key not in os.environ:
        os.environ[key] = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:max(1, int(threads))])
        print(f"rater=vllm: {key}={os.environ[key]} ({threads} thread(s), as rater=hf; the peak is measured on as "
              "many)", flush=True)
    else:
        print(f"rater=vllm: {key}={os.environ[key]} (yours): its flop_util is against the peak on rater=hf's "
              f"{threads} thread(s)", flush=True)
    return os.environ[key]


def _vllm_half(res: dict, enabled: bool, model: str, dtype: str, max_length: int, engine_kwargs: dict | None,
               prompts: list[str], responses: list[str], rules: list, hf_values: np.ndarray, repeats: int,
               shape: Any) -> str:
    """Fills the vLLM fields of ``res``; returns why they stay unavailable ("" when measured)."""
    if not enabled:
        return "not run (bench.vllm=false)"
    try:
        import vllm
    except ImportError:
        return 'vLLM not importable here (pip install -e ".[vllm]" in its own environment; .ci/vllm_lane runs this)'
    from encore.rating.vllm import VLLMRater
    from encore.scale.utilisation import achieved_util, cached_prompt_flops

    res["vllm_cpus"] = _bind_vllm_like_hf(res["threads"]) if res["peak"].startswith("CPU") else "GPU"
    v = VLLMRater(model=model, dtype=dtype, max_length=max_length, tensor_parallel_size=1,
                  engine_kwargs=_plain(engine_kwargs)).load()

    def cold() -> Any:  # every repeat from an empty prefix cache, as rater=hf starts each call from none
        v._llm.reset_prefix_cache()
        return v.rate(prompts, responses, rules)

    try:
        v.rate(prompts[:1], responses[:1], rules)  # warm-up
        t, (values, _) = _best_of(cold, repeats)
        v._llm.reset_prefix_cache()  # untimed: what its cache supplied, prompt by prompt, on the same schedule
        seqs = [s for per in v.prompts.rule_ids(prompts, responses, rules) for s in per]
        outs = v._llm.generate([vllm.TokensPrompt(prompt_token_ids=s) for s in seqs],
                               vllm.SamplingParams(max_tokens=1), use_tqdm=False)
        computed = [(len(s), int(o.num_cached_tokens or 0)) for s, o in zip(seqs, outs)]
    finally:
        v.unload()
    n = res["ratings"]
    res.update(vllm_s=t, vllm_per_s=n / t, vllm_tokens=sum(a - c for a, c in computed),
               vllm_flop_util=achieved_util(cached_prompt_flops(shape, computed), t, res["peak_flops"]),
               max_abs_diff=float(np.nanmax(np.abs(values - hf_values))))
    return ""
