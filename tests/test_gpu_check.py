"""experiments/gpu_check.py in its CPU smoke mode (device=cpu, tiny size), so the first-GPU-hour script cannot break
unseen: every stage runs through the real rater, fine-tuning and backbone code on the real tokenizers, the report
is written, and a failed check exits non-zero. What it does not prove: any GPU number (peak memory is n/a on CPU;
the GPU run of this script, or `pytest -m gpu`, is where those come from)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from encore.node.gpu_check import peak_flops

from conftest import ROOT, needs_real_tokenizers


@needs_real_tokenizers
@pytest.mark.slow
def test_cpu_smoke_run_writes_the_report_and_a_failed_check_exits_nonzero(tmp_path):
    report = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ENCORE_RUNS_DIR": str(tmp_path / "runs")}
    cmd = [sys.executable, str(ROOT / "experiments" / "gpu_check.py"), "device=cpu", "n_pairs=6", "train_steps=2",
           "train=finetune", "tolerance.bf16=0.0", f"report={report}"]  # bf16 differs from fp32 by more than 0
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    r = json.loads(report.read_text())
    assert [s["stage"] for s in r["stages"]] == ["rate", "train", "score"] and r["ok"] is False
    failed = [name for name, ok in r["checks"].items() if not ok]
    assert len(failed) == 1 and failed[0].startswith("bf16 vs fp32") and 0 < r["bf16_vs_fp32_max_abs"] < 0.02
    rate = r["stages"][0]
    assert rate["n_params"] > 128256 * 64 and rate["prompts"] == 6 * 2 * 10 and rate["tokens_per_s"] > 0
    assert all(s["measured_bytes"] is None and s["mfu"] is None and s["planned_bytes"] > 0 for s in r["stages"])
    assert r["vllm_skipped"] == "n/a on CPU" and "n/a on CPU" in done.stdout and "SOME CHECKS FAILED" in done.stdout
    assert 0 < rate["flop_util"] and rate["matmul_peak"].startswith("CPU, bfloat16 matmul")
    assert f"rating flop_util = {rate['flop_util']:.3g} of the matmul peak measured here" in done.stdout


def test_flop_util_is_achieved_prefill_flops_over_the_measured_matmul_peak():
    """SmolLM2's shape: 30 layers of 3,540,096 parameters plus the final norm (576); the 49,152 x 576 embedding and
    head are left out (a lookup, and a head computed at the last position only)."""
    from encore.scale.arch import Arch
    from encore.scale.utilisation import flop_util, matmul_peak_flops, token_params

    arch = Arch("smollm2", "test", "llama", 162_826_560, 30, 576, 1536, 9, 3, 64, 49152, 3_540_096)
    assert token_params(arch) == 162_826_560 - 2 * 49152 * 576 == 30 * 3_540_096 + 576
    assert flop_util(100, 1000, 2.0, 1e5) == 2 * 100 * 1000 / 2.0 / 1e5 == 1.0
    peak = matmul_peak_flops("cpu", torch.float32, n=64, seconds=0.05)
    assert 1e6 < peak < 1e14  # a real measurement: between a megaflop and a hundred teraflops per second


def test_mfu_peak_from_the_setting_or_the_device_name(monkeypatch):
    assert peak_flops(torch.device("cpu"), None)[0] is None
    assert peak_flops(torch.device("cpu"), 100)[0] == 100e12
    for name, tflops in [("NVIDIA H200", 989), ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                         ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA L4", None)]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None, n=name: n)
        got, why = peak_flops(torch.device("cuda"), None)
        assert got == (tflops * 1e12 if tflops else None), (name, why)


def _arch70():
    import yaml

    from encore.scale.arch import config_from_dict, describe

    rec = yaml.safe_load((ROOT / "conf" / "arch" / "llama3_70b_instruct.yaml").read_text())
    rec.pop("_name_or_path")
    return describe(config_from_dict(rec), "llama3-70b", "test")


def test_the_rank_config_is_one_tensor_parallel_rank_of_the_70b_and_predicts_its_kv_bytes():
    """What gpu_check starts vLLM on: the 70B at TP 4 is 16 heads, 2 KV heads and a 7,168-wide MLP at hidden 8,192;
    its KV bytes per token per layer are the 70B rank's, so the KV-token prediction for that config (t = 1) is the
    plan's arithmetic for a rank."""
    from encore.node.vllm_check import rank_arch, rank_config, write_model_dir
    from encore.scale.vllm_memory import kv_bytes_per_block

    arch = _arch70()
    cfg = rank_config(arch, 4, 8)
    assert {k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                                "head_dim", "vocab_size", "num_hidden_layers")} == {
        "hidden_size": 8192, "intermediate_size": 7168, "num_attention_heads": 16, "num_key_value_heads": 2,
        "head_dim": 128, "vocab_size": 128256, "num_hidden_layers": 8}
    rank = rank_arch(cfg)
    assert kv_bytes_per_block(rank, 1, 2, 16) * 80 // 8 == kv_bytes_per_block(arch, 4, 2, 16)
    per_layer = (8192 * (16 + 2 * 2) * 128 + 16 * 128 * 8192 + 3 * 8192 * 7168 + 2 * 8192)
    assert rank.n_params == 8 * per_layer + 2 * 128256 * 8192 + 8192
    with pytest.raises(ValueError, match="tensor parallel 3"):
        rank_config(arch, 3, 8)


def test_vllm_kv_report_and_checks(tmp_path):
    """The comparison and report lines gpu_check prints from a vLLM run (values of the kind a GPU run returns)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    from gpu_check import vllm_kv_lines

    from encore.node.gpu_check import vllm_kv_checks

    r = {"total_memory": 85027979264, "gpu": "NVIDIA H100 80GB HBM3", "rank_layers": 8,
         "layout": {"fits": True, "tensor_parallel": 4, "where": "GPUs 0-3 (tensor parallel 4, ...)", "n_gpus": 8},
         "rank_shape": {"hidden_size": 8192}, "predicted_kv_tokens": 1_000_000, "vllm_kv_tokens": 1_080_000,
         "vllm_blocks": 67_500, "block_size": 16, "ratio": 1.08, "predicted_non_kv": {"weights": 2 ** 33},
         "vllm_measured": {"weights": 2 ** 33, "peak_activation": None},
         "hit_rates": {"grouped": 0.6, "shuffled": 0.1, "never evicted": 0.65, "conversations": 0.6},
         "hit_rate_blocks": 66}
    checks = vllm_kv_checks(r, 0.10)
    assert list(checks.values()) == [True, True, True]
    assert list(vllm_kv_checks({**r, "vllm_kv_tokens": 1_200_000}, 0.10).values())[0] is False  # 20% off
    assert not vllm_kv_checks({**r, "hit_rates": {"grouped": 0.1, "shuffled": 0.1}}, 0.1)[
        "grouped rule prompts hit the prefix cache more than shuffled"]
    text = "\n".join(vllm_kv_lines(r))
    assert "GPU total_memory 85,027,979,264 bytes (79.19 GiB" in text
    assert "the plan predicts 1,000,000 (ratio 1.080)" in text and "weights 8.00 GiB, activation peak n/a" in text
    assert ("grouped 60.0%, shuffled 10.0% (each response's conversation reused: 60.0%; a cache that never "
            "evicts: 65.0%)") in text
    assert vllm_kv_checks({"skipped": "n/a on CPU"}, 0.1) == {}
    assert vllm_kv_lines({"skipped": "n/a on CPU"}) == ["vLLM KV cache vs the plan: n/a on CPU"]


def test_grouped_and_shuffled_hold_the_same_prompts_and_a_cache_that_never_evicts_reuses_shared_full_blocks():
    from encore.node.vllm_check import grouped_and_shuffled, ideal_hit_rate

    # blocks of 2: the second prompt reuses (1, 2) and (1, 2, 3, 4); the third only (1, 2): its last token is computed
    assert ideal_hit_rate([[1, 2, 3, 4], [1, 2, 3, 4, 5], [1, 2, 3, 4]], 2) == 6 / 13
    assert ideal_hit_rate([[1, 2, 3], [9, 2, 3]], 2) == 0
    from encore.node.vllm_check import conversation_hit_rate

    # one response's 2 prompts share 4 tokens (2 blocks of 2) but common_prefix keeps one short: 1 block reused
    assert conversation_hit_rate([[[1, 2, 3, 4], [1, 2, 3, 4, 5]]], 2) == 2 / 9

    ids = [[[m, 100 + k] for k in range(3)] for m in range(4)]
    grouped, shuffled = grouped_and_shuffled(ids, seed=1)
    assert grouped[:3] == [[0, 100], [0, 101], [0, 102]] and sorted(shuffled) == sorted(grouped) != shuffled
