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
    from encore.data.pairs import load_pairs
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
    lengths = [len(s[0]) for s in rater.prompts.rule_ids(prompts, responses, rules)]
    res = {"ratings": n, "fast_s": t_fast, "naive_s": t_naive, "naive_last_logit_s": t_last,
           "fast_per_s": n / t_fast, "naive_per_s": n / t_naive, "speedup": t_naive / t_fast,
           "speedup_vs_naive_last_logit": t_last / t_fast, "max_abs_diff": float(np.abs(fast - ref).max()),
           "mean_prompt_tokens": float(np.mean(lengths))}
    print(f"model: {cfg.get('model_type') if cfg else '?'} hidden={cfg.get('hidden_size') if cfg else '?'} "
          f"vocab={len(rater.tok)}; {len(prompts)} conversations x {len(rules)} rules = {n} ratings; "
          f"mean prompt {res['mean_prompt_tokens']:.0f} tokens")
    print(f"naive loop (batch 1, full logits): {t_naive:.2f}s ({res['naive_per_s']:.0f} ratings/s)")
    print(f"naive loop, last-position logits only (ablation): {t_last:.2f}s")
    print(f"ours (prefix KV reuse, batch {batch_size}, last-position logits): {t_fast:.2f}s ({res['fast_per_s']:.0f} ratings/s)")
    print(f"speedup from prefix reuse + batching alone: {res['speedup_vs_naive_last_logit']:.2f}x")
    print(f"speedup={res['speedup']:.2f} max_abs_diff={res['max_abs_diff']:.2e}")
    return res


def heads_benchmark(data_path: str, rules: list, n_pairs: int = 128, k: int = 10, batch_size: int = 32,
                    repeats: int = 3, model: str = "embedded:all-MiniLM-L6-v2", max_length: int = 256) -> dict[str, float]:
    """(a) One multi-head pass scoring K heads vs one single-head pass vs K single-head passes, same backbone and
    texts; (b) ``train=probe`` (embed + ridge + score) from a cold cache vs the same run again with a warm cache."""
    import tempfile

    import torch

    from encore.rm.backbone import Encoder
    from encore.data.demo import load_demo
    from encore.data.pairs import load_pairs
    from encore.rm.probe import RidgeHeads
    from encore.rm.model import MultiHeadRM, score_ids

    pairs = load_pairs(path=data_path, format="hh", subset_field=None, empty="drop", limit=n_pairs)
    enc = Encoder(model, device="cpu", dtype="float32", max_length=max_length, batch_size=batch_size)
    ids = enc.tokenize(enc.pair_texts(pairs), padding=False)["input_ids"]
    torch.manual_seed(0)
    multi, single = MultiHeadRM(enc.model, k, "mean", True), MultiHeadRM(enc.model, 1, "mean", True)
    score_ids(single, enc.tok, ids[:batch_size], batch_size)  # warm-up
    t_multi, _ = _best_of(lambda: score_ids(multi, enc.tok, ids, batch_size), repeats)
    t_single, _ = _best_of(lambda: score_ids(single, enc.tok, ids, batch_size), repeats)
    t_separate, _ = _best_of(lambda: [score_ids(single, enc.tok, ids, batch_size) for _ in range(k)], 1)

    ratings = np.random.default_rng(0).uniform(size=(len(pairs), 2, k))
    eval_pairs = load_demo("eval")
    with tempfile.TemporaryDirectory() as cache:
        fresh = lambda: Encoder(model, device="cpu", dtype="float32", max_length=max_length, batch_size=batch_size)  # noqa: E731
        t_cold, (_, rep_cold) = _best_of(lambda: RidgeHeads().fit_score(pairs, ratings, eval_pairs, fresh(), cache), 1)
        t_warm, (_, rep_warm) = _best_of(lambda: RidgeHeads().fit_score(pairs, ratings, eval_pairs, fresh(), cache), repeats)
        t_refit, _ = _best_of(lambda: RidgeHeads(alphas=(0.5, 5.0)).fit_score(pairs, ratings, eval_pairs, fresh(), cache), 1)
    assert not rep_cold["embeddings_cached"] and rep_warm["embeddings_cached"] and rep_warm["head_scores_cached"]
    res = {"texts": len(ids), "k": k, "multi_head_s": t_multi, "single_head_s": t_single, "k_single_passes_s": t_separate,
           "heads_cost": t_multi / t_single, "separate_cost": t_separate / t_single, "probe_cold_s": t_cold,
           "probe_warm_s": t_warm, "probe_warm_embeddings_new_heads_s": t_refit, "cache_speedup": t_cold / t_warm,
           "refit_speedup": t_cold / t_refit}
    print(f"backbone {model}: {len(ids)} responses of {len(pairs)} HH-RLHF pairs, max {max_length} tokens, batch {batch_size}")
    print(f"one pass, {k} heads: {t_multi:.2f}s | one pass, 1 head: {t_single:.2f}s | {k} single-head passes: "
          f"{t_separate:.2f}s ({res['separate_cost']:.1f}x one pass)")
    print(f"train=probe cold cache: {t_cold:.2f}s | warm cache: {t_warm * 1e3:.1f}ms | warm embeddings, new heads: "
          f"{t_refit * 1e3:.0f}ms ({res['refit_speedup']:.0f}x)")
    print(f"heads_cost={res['heads_cost']:.3f} cache_speedup={res['cache_speedup']:.1f}")
    return res


def sweep_benchmark(data_path: str, rules: list, n_pairs: int = 500, n_taus: int = 20, logger: str = "none",
                    runner: str = "experiments/evaluate.py") -> dict[str, float]:
    """Wall time of one single-τ ``evaluate`` run from a cold cache (it rates the pairs and runs the backbone) vs a
    ``n_taus``-value τ multirun afterwards over the cached scores, both as fresh processes with the same overrides.
    Every sweep job must report that it re-ran no rater and no backbone."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    taus = np.geomspace(0.01, 1000, n_taus)
    common = ["data=hh_rlhf_harmless", f"data.path={data_path}", f"data.limit={n_pairs}", f"logger={logger}"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ENCORE_CACHE_DIR": f"{tmp}/cache", "ENCORE_RUNS_DIR": f"{tmp}/runs"}

        def run(*args: str) -> float:
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, runner, *args, *common], cwd=root, env=env, capture_output=True,
                                 text=True)
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
            return time.perf_counter() - t0

        t_cold = run("method=encore", "method.tau=2")
        t_warm = run("method=encore", "method.tau=2")
        t_sweep = run("-m", "method=encore", "method.tau=" + ",".join(f"{t:.4g}" for t in taus))
        jobs = [json.loads(p.read_text()) for p in Path(tmp, "runs").glob("hh-rlhf-harmless/multirun-*/*/metrics.json")]
    if len(jobs) != n_taus or not all(j["rating"]["n_new"] == 0 and j["heads"]["embeddings_cached"]
                                      and j["heads"]["head_scores_cached"] for j in jobs):
        raise RuntimeError(f"sweep: expected {n_taus} jobs that all hit the caches, got {len(jobs)}")
    res = {"n_pairs": n_pairs, "n_taus": n_taus, "single_cold_s": t_cold, "single_warm_s": t_warm, "sweep_s": t_sweep,
           "sweep_cost": t_sweep / t_cold, "sweep_vs_warm_single": t_sweep / t_warm}
    print(f"{n_pairs} HH-RLHF pairs, embedded rater + MiniLM heads, method=encore, logger={logger}, fresh processes")
    print(f"one run, tau=2, cold cache: {t_cold:.1f}s | same run, warm cache: {t_warm:.1f}s | "
          f"{n_taus}-value tau multirun, warm: {t_sweep:.1f}s ({t_sweep / n_taus:.2f}s per job; every job hit the caches)")
    print(f"sweep_cost={res['sweep_cost']:.2f}")
    return res


def shards_benchmark(data_path: str, rules: list, n_pairs: int = 800, num_shards: int = 2, chunk_size: int = 128,
                     rater: list[str] | None = None) -> dict[str, Any]:
    """One rating job as one process vs as ``num_shards`` shard processes in parallel, fresh processes and caches;
    then the shards' cache assembled by an unsharded run. A shard job on a cluster owns its own GPUs, so each shard
    process here owns cores / N threads, and the single job it is compared with (``shard_speedup``) owns the same:
    one "device". The single job on all cores is timed too (``vs_all_cores``): on a CPU, torch's threads already
    spread one process over every core, which no GPU job can do across nodes. ``identical``: the assembled ratings
    equal the single job's exactly."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    common = ["data=hh_rlhf_harmless", f"data.path={data_path}", f"data.limit={n_pairs}", "logger=none",
              f"rating.chunk_size={chunk_size}", *(rater or [])]
    cores = os.cpu_count() or 1
    per = max(cores // num_shards, 1)
    with tempfile.TemporaryDirectory() as tmp:
        def run(jobs: list[tuple[str, str, int, list[str]]]) -> float:
            """(out dir, cache, threads, extra overrides) per process, all started at once; wall time of all."""
            t0 = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "experiments/rate.py", *common, *extra,
                                       f"hydra.run.dir={tmp}/{out}"], cwd=root, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "ENCORE_CACHE_DIR": f"{tmp}/{cache}", "HF_HUB_OFFLINE": "1",
                                           "OMP_NUM_THREADS": str(threads)})
                     for out, cache, threads, extra in jobs]
            for p in procs:
                _, err = p.communicate()
                if p.returncode:
                    raise RuntimeError(err[-3000:])
            return time.perf_counter() - t0

        t_all = run([("all_cores", "all", cores, [])])
        t_one = run([("single", "one", per, [])])
        t_shards = run([(f"shard{i}", "shared", per, [f"rating.num_shards={num_shards}", f"rating.shard={i}"])
                        for i in range(num_shards)])
        t_assemble = run([("assembled", "shared", cores, [])])
        single = pd.read_parquet(f"{tmp}/single/ratings.parquet")
        assembled = pd.read_parquet(f"{tmp}/assembled/ratings.parquet")
        identical = single.equals(assembled)
        diff = float((single["value"] - assembled["value"]).abs().max())
    res = {"n_pairs": n_pairs, "ratings": len(single), "num_shards": num_shards, "cores": cores,
           "single_all_cores_s": t_all, "single_s": t_one, "shards_s": t_shards, "assemble_s": t_assemble,
           "shard_speedup": t_one / t_shards, "vs_all_cores": t_all / t_shards, "identical": identical,
           "max_abs_diff": diff}
    print(f"{n_pairs} HH-RLHF pairs, {len(single)} ratings, chunks of {chunk_size} responses, {cores} cores, fresh "
          f"processes; rater: {' '.join(rater or [])}")
    print(f"one job, {per} thread(s) (one 'device'): {t_one:.1f}s | {num_shards} shard jobs in parallel, {per} "
          f"thread(s) each: {t_shards:.1f}s | assembling their cache: {t_assemble:.1f}s (no rating)")
    print(f"one job on all {cores} cores: {t_all:.1f}s (vs_all_cores={res['vs_all_cores']:.2f}: on a CPU one process "
          f"already spreads over every core)")
    print(f"shard_speedup={res['shard_speedup']:.2f} identical={str(identical).lower()}")
    return res
