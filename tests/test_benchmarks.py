"""Every benchmark runs at a tiny size through its real command (``python experiments/benchmark.py bench=<name>``,
started from another working directory) and prints its ratio line, so a refactor cannot break one unseen. The
sizes are far too small for the ratios to mean anything: the README's numbers come from the full-size runs."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED_HH

pytestmark = pytest.mark.skipif(not SHARED_HH.exists(), reason="needs ../shared/data (HH-RLHF test file)")

TINY = {
    "rater": (["bench.n_conversations=2", "bench.repeats=1", "bench.config.hidden_size=32",
               "bench.config.intermediate_size=64", "bench.config.num_hidden_layers=1"], "speedup="),
    "heads": (["bench.n_pairs=4", "bench.k=2", "bench.repeats=1", "bench.batch_size=4", "bench.max_length=32"],
              "heads_cost="),
    "shards": (["bench.n_pairs=4", "bench.chunk_size=2"], "shard_speedup="),
    "sweep": (["bench.n_pairs=6", "bench.n_taus=2"], "sweep_cost="),
}


def run_benchmark(name: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENCORE_RUNS_DIR": str(tmp_path / "runs"), "ENCORE_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("ENCORE_SHARED_DATA", None)  # the default must find ../shared/data from the clone, not from the cwd
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "benchmark.py"), f"bench={name}", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_prints_its_ratio_line(name, tmp_path):
    overrides, ratio = TINY[name]
    out = run_benchmark(name, tmp_path, *overrides)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith(ratio)]
    assert line, out.stdout[-2000:]
    value = float(line[-1].split()[0].split("=")[1])
    assert value > 0
    result = json.loads(next((tmp_path / "runs" / "benchmark").glob("*/benchmark.json")).read_text())
    assert result  # the run wrote what it printed


def test_missing_benchmark_data_names_the_setting(tmp_path):
    out = run_benchmark("rater", tmp_path, f"data_path={tmp_path}/nope.jsonl.gz")
    assert out.returncode != 0
    assert "data_path=" in out.stderr + out.stdout and "ENCORE_SHARED_DATA" in out.stderr + out.stdout


@pytest.mark.slow
def test_engines_benchmark_prints_its_line_and_the_hf_half_where_vllm_is_absent(tmp_path, smollm2):
    """bench=engines on one HH-RLHF pair (2 responses x 10 rules) of the real SmolLM2 checkpoint (the session's,
    by path: no second conversion). Here vLLM does not import, so its fields say unavailable; the lane runs both
    halves. The prefill tokens are exactly the shared-prefix count of the rater's own prompt ids."""
    import importlib.util

    from omegaconf import OmegaConf

    from encore.data.pairs import load_pairs
    from encore.node.gpu_check import rating_tokens
    from encore.rating.tokens import PromptTokenizer
    from encore.rules import load_rules

    out = run_benchmark("engines", tmp_path, "bench.n_pairs=1", f"bench.model={smollm2}", "bench.max_length=1024",
                        "bench.background=1", "bench.layouts=[1x1]", "bench.breakdown=true")
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("hf_per_s=")][-1]
    fields = dict(kv.split("=") for kv in line.split())
    assert list(fields) == ["hf_per_s", "vllm_per_s", "hf_flop_util", "vllm_flop_util", "max_abs_diff",
                            "hf_loaded_share", "hf_pad_share", "hf_cpu_flop_util"]
    assert float(fields["hf_per_s"]) > 0 and float(fields["hf_flop_util"]) > 0
    assert float(fields["hf_loaded_share"]) > 0 and 0 <= float(fields["hf_pad_share"]) < 1
    assert float(fields["hf_cpu_flop_util"]) > 0
    assert any(ln.startswith("quiet: rater=hf") for ln in out.stdout.splitlines())
    assert any(ln.startswith("loaded (1 busy processes") for ln in out.stdout.splitlines())
    assert any(ln.startswith("layout 1x1 (quiet") for ln in out.stdout.splitlines())
    assert any(ln.startswith("breakdown: linear layers") for ln in out.stdout.splitlines())
    if importlib.util.find_spec("vllm") is None:
        assert fields["vllm_per_s"] == fields["vllm_flop_util"] == fields["max_abs_diff"] == "unavailable"
    result = json.loads(next((tmp_path / "runs" / "benchmark").glob("*/benchmark.json")).read_text())
    pairs = load_pairs(path=str(SHARED_HH), format="hh", subset_field=None, empty="drop", limit=1)
    rules = load_rules(OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "rules" / "safety10.yaml"), resolve=True))
    assert result["ratings"] == 20
    assert result["breakdown"]["linear_calls"] > 0 and sum(result["breakdown"]["shares"].values()) > 0.99
    assert result["prefill_tokens"] == rating_tokens(PromptTokenizer(smollm2), pairs, rules)[0]
    # flop_util's work: SmolLM2's 134.5 M parameters once (tied head), the hf passes' chunks (issue 32)
    from encore.rating.tokens import common_prefix
    from encore.scale.utilisation import FlopShape, shared_prefix_flops

    assert result["n_params"] == 134_515_008 and result["tied"] and result["dtype"] == "float32"
    seqs = PromptTokenizer(smollm2).rule_ids(*_sides(pairs), rules)
    chunks = [(c, [len(s) - c for s in per]) for per in seqs for c in [common_prefix(per)]]
    shape = FlopShape(result["body_params"], 49152, 576, 30, 9, 64, True)
    assert result["hf_flops"] == shared_prefix_flops(shape, chunks)


def _sides(pairs):
    return ([p for p in pairs["prompt"] for _ in (0, 1)],
            [x for c, r in zip(pairs["chosen"], pairs["rejected"]) for x in (c, r)])


def test_the_vllm_half_binds_as_many_cpus_as_rater_hf_has_threads_unless_the_user_chose(monkeypatch, capsys):
    """vLLM's CPU worker binds its own OpenMP threads (auto: a core per thread, less its scheduler's); the engines
    benchmark pins it to rater=hf's thread count so both flop_utils share one peak, and keeps a user's binding."""
    import os

    from benchmarks.engines import _bind_vllm_like_hf

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    cpus = sorted(os.sched_getaffinity(0))
    assert _bind_vllm_like_hf(1) == str(cpus[0]) == os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND")
    assert _bind_vllm_like_hf(64) == ",".join(map(str, cpus))  # never more CPUs than the process may use
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    assert _bind_vllm_like_hf(1) == "0-1" and "(yours)" in capsys.readouterr().out
