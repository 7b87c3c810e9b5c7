"""A sweep or ablation job only reads caches: a miss stops it before any rater or backbone loads, naming the one
command that fills the cache; once filled, the same job runs with every model load forbidden."""

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from encore.cache.cache_only import CacheMiss
from encore.run.pipeline import run_evaluate, run_rate, run_train_rm

from conftest import CONF, ROOT

# the τ sweep on offline parts: a tiny random Llama rater, a tiny random encoder under ridge heads, the demo pairs
TINY = ["data=demo", "data.limit=12", "eval=demo", "eval.subsets=[donotanswer]", "rater=hf_tiny",
        "model=tiny_random", "train=probe", "logger=none", "stats.n_boot=39", "stats.n_perm=50"]


def sweep_cfg(cache, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=tau_sweep", *TINY, f"cache_dir={cache}",
                                                        *overrides])


@pytest.fixture
def no_model_loads(monkeypatch):
    """Every way a rater or backbone gets its weights fails the test."""
    import encore.rm.backbone
    import encore.scale.loading
    import encore.rating.hf

    def forbidden(*a, **k):
        raise AssertionError("a cache-only job loaded a model")

    monkeypatch.setattr(encore.scale.loading, "load_model", forbidden)
    monkeypatch.setattr(encore.rm.backbone.Encoder, "load", forbidden)
    monkeypatch.setattr(encore.rating.hf.HFRater, "load", forbidden)


def test_an_empty_cache_stops_a_sweep_job_before_the_rater_loads(tmp_path, no_model_loads):
    with pytest.raises(CacheMiss, match=r"rating\(s\) of the training pairs.*cache_only=false"):
        run_evaluate(sweep_cfg(tmp_path / "cache"), tmp_path / "run")
    assert not (tmp_path / "cache" / "embeddings").exists()


def test_missing_heads_stop_a_sweep_job_before_the_backbone_loads(tmp_path, monkeypatch):
    run_rate(sweep_cfg(tmp_path / "cache"), tmp_path / "rated")  # ratings cached, no embeddings or heads
    import encore.rm.backbone

    monkeypatch.setattr(encore.rm.backbone.Encoder, "load", lambda *a, **k: pytest.fail("the backbone loaded"))
    with pytest.raises(CacheMiss, match=r"embeddings/.*\.npz"):
        run_evaluate(sweep_cfg(tmp_path / "cache"), tmp_path / "run")


def test_a_filled_cache_runs_the_sweep_job_without_any_model(tmp_path, monkeypatch):
    run_train_rm(sweep_cfg(tmp_path / "cache"), tmp_path / "filled")  # a filler: cache_only does not apply
    import encore.rm.backbone
    import encore.scale.loading
    import encore.rating.hf

    for owner, name in ((encore.scale.loading, "load_model"), (encore.rm.backbone.Encoder, "load"),
                        (encore.rating.hf.HFRater, "load")):
        monkeypatch.setattr(owner, name, lambda *a, **k: pytest.fail("a cache-only job loaded a model"))
    m = run_evaluate(sweep_cfg(tmp_path / "cache", "method.encore.tau=0.5"), tmp_path / "run")
    assert {r["method"] for r in m["main_table"]} == {"encore", "tau_to_inf", "tau_to_zero", "single_rule"}


def test_the_sweep_runner_exits_nonzero_naming_the_fill_command_and_leaves_no_run_dir(tmp_path):
    env = {**os.environ, "ENCORE_CACHE_DIR": str(tmp_path / "cache"), "ENCORE_RUNS_DIR": str(tmp_path / "runs"),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "experiments/evaluate.py", "-m", "experiment=tau_sweep", *TINY,
           "method.encore.tau=0.5,2"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "python experiments/evaluate.py method.encore.tau=0.5 experiment=tau_sweep" in out.stderr
    assert "'eval.subsets=[donotanswer]'" in out.stderr  # quoted for the shell
    assert "cache_only=false" in out.stderr and "a cache-only job loaded" not in out.stderr
    assert not (tmp_path / "runs" / "tau_sweep").exists()  # neither the jobs' directories nor the sweep's
