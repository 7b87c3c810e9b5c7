"""The first GPU hour: planned vs measured peak memory, bf16 vs fp32 ratings, vLLM vs hf, and rating / training /
scoring throughput (tokens/s, MFU) on random-weight Llamas with the real tokenizers. Writes a JSON report; exits 1
when a check fails.

    python experiments/gpu_check.py                 # one GPU, < 10 minutes
    python experiments/gpu_check.py device=cpu      # smoke mode at tiny size (what the tests run)

Settings:
    device               auto: the GPU when there is one; cpu: smoke mode (tiny size, peak memory n/a)
    size.hidden_size     on a GPU, the models' shape (the Llama-3.2-1B shape by default; conf/gpu_check.yaml)
    size.num_hidden_layers
                         layers of that shape
    n_pairs              pairs rated (x 2 responses x K rules), trained on and scored
    train_steps          optimiser steps timed, after a one-step warm-up
    peak_tflops          bf16 dense peak per GPU for the MFU; null: from the device name
    vllm                 compare rater=vllm with rater=hf where vllm imports on a GPU
    vllm_memory          vLLM's gpu_memory_utilization for that comparison
    tolerance.bf16       max |bf16 - fp32| rating on the same weights
    tolerance.vllm       max |vllm (bf16) - hf (fp32)| rating
    vllm_kv.enabled      on a GPU where vllm imports: vLLM's own KV cache on one rank of the 70B (dummy weights)
                         beside the plan's, and prefix-cache hit rates grouped vs shuffled
    vllm_kv.layers       layers of that rank's shape
    vllm_kv.tolerance    |vLLM's KV tokens / the plan's - 1| allowed
    report               where the JSON report is written
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from _runner import quiet_libraries, reported
from encore.cache.artifacts import write_json
from encore.node.gpu_check import run_gpu_check
from encore.run.kinds import GPU_CHECK, check_kinds
from encore.scale.hardware import fmt_bytes


def format_report(r: dict) -> str:
    lines = [f"gpu_check on {r['device']} ({r['size'] if isinstance(r['size'], str) else 'scaled: ' + str(r['size'])})",
             f"MFU peak: {r['peak_from']}",
             f"{'stage':<6} {'params':>8} {'planned':>10} {'measured':>10} {'seconds':>8} {'tokens/s':>10} {'MFU':>7}"]
    for s in r["stages"]:
        measured = fmt_bytes(s["measured_bytes"]) if s["measured_bytes"] is not None else "n/a on CPU"
        mfu = f"{s['mfu']:.1%}" if s["mfu"] is not None else "n/a"
        lines.append(f"{s['stage']:<6} {s['n_params'] / 1e9:>7.2f}B {fmt_bytes(s['planned_bytes']):>10} {measured:>10} "
                     f"{s['seconds']:>8.2f} {s['tokens_per_s']:>10,.0f} {mfu:>7}")
    rate = r["stages"][0]
    lines.append(f"rating flop_util = {rate['flop_util']:.3g} of the matmul peak measured here ({rate['matmul_peak']}; "
                 "as experiments/benchmark.py bench=engines)")
    lines.append(f"bf16 vs fp32 ratings: max |Δ| = {r['bf16_vs_fp32_max_abs']:.4f}")
    v = r["vllm_vs_hf_max_abs"]
    lines.append(f"rater=vllm vs rater=hf: " + (f"max |Δ| = {v:.4f}" if v is not None else r["vllm_skipped"]))
    lines += vllm_kv_lines(r.get("vllm_kv") or {"skipped": "not run"})
    lines += [f"  [{'ok' if ok else 'FAILED'}] {name}" for name, ok in r["checks"].items()]
    lines.append("all checks passed" if r["ok"] else "SOME CHECKS FAILED")
    return "\n".join(lines)


def vllm_kv_lines(v: dict) -> list[str]:
    if "skipped" in v:
        return [f"vLLM KV cache vs the plan: {v['skipped']}"]
    m, p = v.get("vllm_measured") or {}, v["predicted_non_kv"]
    gib = lambda b: "n/a" if b is None else f"{b / 2 ** 30:.2f} GiB"  # noqa: E731
    return [f"GPU total_memory {v['total_memory']:,} bytes ({gib(v['total_memory'])}, {v['gpu']})",
            f"the 70B on {v['layout']['n_gpus']} of them: {v['layout']['where']}",
            f"vLLM on one rank's shape ({v['rank_layers']} layers, {v['rank_shape']}, dummy weights): KV cache "
            f"{v['vllm_kv_tokens']:,} tokens ({v['vllm_blocks']:,} blocks of {v['block_size']}); the plan predicts "
            f"{v['predicted_kv_tokens']:,}" + (f" (ratio {v['ratio']:.3f})" if v["ratio"] else ""),
            f"  vLLM measured: weights {gib(m.get('weights'))}, activation peak {gib(m.get('peak_activation'))}, "
            f"CUDA graphs {gib(m.get('cuda_graphs'))}, KV {gib(m.get('available_kv'))}"
            + (f" ({m['error']})" if "error" in m else ""),
            "  the plan: " + ", ".join(f"{k} {gib(b)}" for k, b in p.items()),
            f"prefix-cache hit rate (vLLM's num_cached_tokens, cache of {v['hit_rate_blocks']} blocks): grouped "
            f"{v['hit_rates']['grouped']:.1%}, shuffled {v['hit_rates']['shuffled']:.1%}"
            + (f" (each response's conversation reused: {c:.1%}; a cache that never evicts: {h:.1%})"
               if (h := v["hit_rates"].get("never evicted")) is not None
               and (c := v["hit_rates"].get("conversations")) is not None else "")]


@hydra.main(config_path="../conf", config_name="gpu_check", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with reported(cfg):
        check_kinds(cfg, GPU_CHECK)
        quiet_libraries()
        with tempfile.TemporaryDirectory(prefix="encore-gpu-check-") as work:
            report = run_gpu_check(cfg, Path(work))
    write_json(cfg.report, report)
    print(format_report(report))
    print(f"report: {cfg.report}")
    if not report["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
