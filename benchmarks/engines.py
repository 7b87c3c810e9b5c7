"""``rater=hf`` vs in-process ``rater=vllm`` on the same trained model (SmolLM2-135M-Instruct), the same HH-RLHF
responses and rules, in one run: ratings per second, the share of the machine each reaches (``flop_util``, see
:mod:`encore.scale.utilisation`) and the largest rating difference. Where vLLM does not import (the CI environment),
the hf half runs and the vLLM fields say ``unavailable``. The final line:

    hf_per_s=… vllm_per_s=… hf_flop_util=… vllm_flop_util=… max_abs_diff=…

Both engines are charged the same useful work, 2 · N · (each response's shared prefix once + its K rule suffixes):
the tokens ``rater=hf`` computes; vLLM's prefix cache reuses whole KV blocks, so it may compute a few more.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.bench import _best_of, _plain

UNAVAILABLE = "unavailable"


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, float) else str(v)


def engines_benchmark(data_path: str, rules: list, model: str = "smollm2", n_pairs: int = 16, dtype: str = "float32",
                      batch_size: int = 4, max_length: int = 2048, repeats: int = 1, vllm: bool = True,
                      engine_kwargs: dict | None = None) -> dict[str, Any]:
    from encore.data.pairs import load_pairs
    from encore.node.gpu_check import rating_tokens
    from encore.rating.hf import HFRater
    from encore.rules import load_rules
    from encore.scale.utilisation import describe_peak, flop_util, matmul_peak_flops, token_params

    rules = load_rules(_plain(rules))
    pairs = load_pairs(path=data_path, format="hh", subset_field=None, empty="drop", limit=n_pairs)
    prompts = [p for p in pairs["prompt"] for _ in (0, 1)]
    responses = [x for c, r in zip(pairs["chosen"], pairs["rejected"]) for x in (c, r)]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    hf = HFRater(model=model, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length).load()
    torch_dtype = next(hf._model.parameters()).dtype
    tokens, longest = rating_tokens(hf.prompts, pairs, rules)
    n_params = token_params(hf.arch_info())  # what a prompt token passes through
    hf.rate(prompts[:1], responses[:1], rules)  # warm-up
    t_hf, (hf_values, _) = _best_of(lambda: hf.rate(prompts, responses, rules), repeats)
    hf.unload()
    peak = matmul_peak_flops(device, torch_dtype)
    n = len(responses) * len(rules)
    res: dict[str, Any] = {"model": model, "ratings": n, "prefill_tokens": tokens, "longest_prompt": longest,
                           "n_params": n_params, "peak_flops": peak, "peak": describe_peak(device, torch_dtype, peak),
                           "hf_s": t_hf, "hf_per_s": n / t_hf, "hf_flop_util": flop_util(n_params, tokens, t_hf, peak),
                           "vllm_s": UNAVAILABLE, "vllm_per_s": UNAVAILABLE, "vllm_flop_util": UNAVAILABLE,
                           "max_abs_diff": UNAVAILABLE}
    why = _vllm_half(res, vllm, model, dtype, max_length, engine_kwargs, prompts, responses, rules, hf_values, repeats)
    print(f"{model}: {n_params / 1e6:.1f} M parameters per token (embedding and head aside), {dtype}, {device}; "
          f"{len(pairs)} HH-RLHF pairs x 2 responses x {len(rules)} rules = {n} ratings; {tokens:,} prefill tokens (prefix once), longest prompt {longest}")
    print(f"peak: {res['peak']}")
    print(f"rater=hf (batch {batch_size}, prefix KV reuse): {t_hf:.1f}s")
    print(f"rater=vllm (in process, prefix caching): " + (f"{res['vllm_s']:.1f}s" if not why else why))
    print(" ".join(f"{k}={_fmt(res[k], spec)}" for k, spec in [("hf_per_s", ".3g"), ("vllm_per_s", ".3g"),
          ("hf_flop_util", ".3g"), ("vllm_flop_util", ".3g"), ("max_abs_diff", ".2e")]))
    return res


def _vllm_half(res: dict, enabled: bool, model: str, dtype: str, max_length: int, engine_kwargs: dict | None,
               prompts: list[str], responses: list[str], rules: list, hf_values: np.ndarray, repeats: int) -> str:
    """Fills the vLLM fields of ``res``; returns why they stay unavailable ("" when measured)."""
    if not enabled:
        return "not run (bench.vllm=false)"
    try:
        import vllm  # noqa: F401
    except ImportError:
        return 'vLLM not importable here (pip install -e ".[vllm]" in its own environment; .ci/vllm_lane runs this)'
    from encore.rating.vllm import VLLMRater
    from encore.scale.utilisation import flop_util

    v = VLLMRater(model=model, dtype=dtype, max_length=max_length, tensor_parallel_size=1,
                  engine_kwargs=_plain(engine_kwargs)).load()

    def cold() -> Any:  # every repeat from an empty prefix cache, as rater=hf starts each call from none
        v._llm.reset_prefix_cache()
        return v.rate(prompts, responses, rules)

    try:
        v.rate(prompts[:1], responses[:1], rules)  # warm-up
        t, (values, _) = _best_of(cold, repeats)
    finally:
        v.unload()
    n = res["ratings"]
    res.update(vllm_s=t, vllm_per_s=n / t, vllm_flop_util=flop_util(res["n_params"], res["prefill_tokens"], t,
                                                                    res["peak_flops"]),
               max_abs_diff=float(np.nanmax(np.abs(values - hf_values))))
    return ""

