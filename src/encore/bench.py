"""Benchmarks whose claims are ratios measured side by side in one run (these machines are noisy).

Each returns a dict and prints a final machine-readable line.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from omegaconf import OmegaConf


def _plain(node: Any) -> Any:
    """Configs arrive as OmegaConf nodes or plain containers; the library takes plain ones."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rater_benchmark(data_path: str, rules: list, n_conversations: int = 64, batch_size: int = 8, repeats: int = 3,
                    tokenizer: str = "tiny-wordpiece", config: dict | None = None) -> dict[str, float]:
    """Throughput of :class:`HFRater` vs the naive loop on the same tiny model, K rules and HH-RLHF conversations."""
    from encore.data import load_pairs
    from encore.rating.hf import HFRater
    from encore.rating.naive import naive_rate
    from encore.rules import load_rules

    rules = load_rules(_plain(rules))
    pairs = load_pairs(path=data_path, format="hh", subset_field=None, empty="drop", limit=n_conversations)
    prompts, responses = list(pairs["prompt"]), list(pairs["chosen"])
    cfg = _plain(config)
    rater = HFRater(model="tiny-random", tokenizer=tokenizer, config=cfg, device="cpu", dtype="float32",
                    batch_size=batch_size).load()
    rater.rate(prompts[:2], responses[:2], rules)  # warm-up
    naive_rate(rater, prompts[:1], responses[:1], rules)
    n = len(prompts) * len(rules)
    t_fast, (fast, _) = _best_of(lambda: rater.rate(prompts, responses, rules), repeats)
    t_naive, ref = _best_of(lambda: naive_rate(rater, prompts, responses, rules), repeats)
    t_last, _ = _best_of(lambda: naive_rate(rater, prompts, responses, rules, full_logits=False), repeats)
    lengths = [len(s[0]) for s in rater.tokenize_rule_prompts(prompts, responses, rules)]
    res = {"ratings": n, "fast_s": t_fast, "naive_s": t_naive, "naive_last_logit_s": t_last,
           "fast_per_s": n / t_fast, "naive_per_s": n / t_naive, "speedup": t_naive / t_fast,
           "speedup_vs_naive_last_logit": t_last / t_fast, "max_abs_diff": float(np.abs(fast - ref).max()),
           "mean_prompt_tokens": float(np.mean(lengths))}
    print(f"model: {cfg.get('model_type') if cfg else '?'} hidden={cfg.get('hidden_size') if cfg else '?'} "
          f"vocab={len(rater._tok)}; {len(prompts)} conversations x {len(rules)} rules = {n} ratings; "
          f"mean prompt {res['mean_prompt_tokens']:.0f} tokens")
    print(f"naive loop (batch 1, full logits): {t_naive:.2f}s ({res['naive_per_s']:.0f} ratings/s)")
    print(f"naive loop, last-position logits only (ablation): {t_last:.2f}s")
    print(f"ours (prefix KV reuse, batch {batch_size}, last-position logits): {t_fast:.2f}s ({res['fast_per_s']:.0f} ratings/s)")
    print(f"speedup from prefix reuse + batching alone: {res['speedup_vs_naive_last_logit']:.2f}x")
    print(f"speedup={res['speedup']:.2f} max_abs_diff={res['max_abs_diff']:.2e}")
    return res
