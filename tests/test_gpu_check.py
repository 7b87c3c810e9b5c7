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
