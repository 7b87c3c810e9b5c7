import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from encore.data.pairs import DataError

from encore.data.demo import load_demo
from encore.run.pipeline import run_correlation, run_evaluate, run_reproduce
from encore.rules import RuleError
from encore.errors import SettingError

from conftest import CONF, ROOT, SHARED_HH, make_cfg

# arch/ holds architecture records that other groups include; accelerate/ holds accelerate launch configs.
GROUPS = [p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment", "bench", "arch", "accelerate")]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_config_option_composes(group):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for option in _options(group):
            cfg = compose(config_name="config", overrides=[f"{group}={option}"])
            assert cfg[group] is not None


@pytest.mark.parametrize("bench", _options("bench"))
def test_every_benchmark_composes(bench):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="benchmark", overrides=[f"bench={bench}"])
        assert cfg.bench._target_.startswith("benchmarks.")  # resolved in tests/test_house.py


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(experiment):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}"])
        assert cfg.experiment_name


def test_end_to_end_tiny(tmp_path, cache):
    cfg = make_cfg(cache=cache)
    m = run_reproduce(cfg, tmp_path / "run")
    run = tmp_path / "run"
    for f in ("rule_stats.csv", "correlation.json", "weights.csv", "main_table.csv", "metrics.json",
              "ratings.parquet", "head_scores.parquet", "significance.csv", "figures/entropy_vs_accuracy.png",
              "figures/weights.png", "figures/main_results.png", "figures/rating_distributions.pdf"):
        assert (run / f).exists(), f
    table = pd.read_csv(run / "main_table.csv")
    assert table["method"].tolist() == ["encore", "uniform", "random", "single_rule", "single_rule_random",
                                        "bt_optimized", "bt_single_head", "gating"]
    expected_cols = {"refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
                     "donotanswer", "safety"}
    assert expected_cols <= set(table.columns)
    assert table["safety"].between(0, 100).all()
    assert table.set_index("method").loc["random", "n_seeds"] == 10
    weights = pd.read_csv(run / "weights.csv").set_index("method")
    assert weights.shape == (7, 10)  # the gate's mean weights are shown; a single BT head has none
    gate = table.set_index("method").loc["gating"]
    assert 0 <= gate["gate_entropy_mean"] <= gate["gate_entropy_uniform"] == pytest.approx(np.log(10))
    assert weights.loc["encore"].sum() == pytest.approx(1)
    assert m["heads"]["embeddings_cached"] is False
    fitted = {r["method"]: r.get("fitted_on") for r in m["main_table"] if isinstance(r.get("fitted_on"), str)}
    assert set(fitted) == {"bt_optimized", "gating"}  # each fitted method says what it was fitted on
    assert all(f.startswith("5-fold cross-fitted probe heads") for f in fitted.values())  # never in sample by default
    assert "fitted: BT-optimised on 5-fold cross-fitted" in m["summary"]

    # A second stage run re-uses every cached artefact: no rating, no backbone pass.
    m2 = run_evaluate(make_cfg("method=encore", "method.tau=0.5", cache=cache), tmp_path / "run2")
    assert m2["rating"]["n_new"] == 0 and m2["heads"]["embeddings_cached"] and m2["heads"]["head_scores_cached"]
    assert pd.read_csv(tmp_path / "run2" / "main_table.csv")["method"].tolist() == ["encore"]


@pytest.mark.parametrize("override, error, match", [
    ("method.tau=0", ValueError, "method.tau"),
    ("method.tau=-1", ValueError, "method.tau"),
    ("eval.subsets=[refusals-violent]", DataError, "RewardBench does not have"),
    ("rules.rules=[{name: only, text: one rule}]", RuleError, "at least 2"),
    ("study.bins=2.5", SettingError, "study.bins"),
    ("study.bins=abc", SettingError, "study.bins"),
    ("study.ties=sometimes", SettingError, "study.ties"),
    ("study.log_base=-1", SettingError, "study.log_base"),
    ("rating.chunk_size=0", SettingError, "rating.chunk_size"),
    ("data.limit=0", DataError, "data.limit"),
])
def test_bad_input_fails_before_writing_anything(tmp_path, cache, override, error, match):
    overrides = ["method=encore", override] if "tau" in override else [override]
    run = tmp_path / "run"
    with pytest.raises(error, match=match):
        run_evaluate(make_cfg(*overrides, cache=cache), run)
    assert not run.exists() or not any(run.iterdir())


def _env(cache: Path) -> dict:
    env = dict(os.environ, ENCORE_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_tau_multirun_in_subprocess_reruns_no_model(tmp_path, cache):
    runs = tmp_path / "runs"
    env = _env(cache) | {"ENCORE_RUNS_DIR": str(runs)}
    common = ["model=tiny_random", "logger=none", "stats.n_boot=39", "stats.n_perm=100"]
    subprocess.run([sys.executable, "experiments/reproduce.py", *common], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    # The tau_sweep experiment on the demo's stand-ins, three τ values, jobs in parallel through the joblib launcher.
    offline = ["data=demo", "eval=demo", "rater=embedding", "train=probe"]
    out = subprocess.run([sys.executable, "experiments/evaluate.py", "-m", "experiment=tau_sweep", *offline,
                          "hydra/launcher=local", "method.encore.tau=0.5,2,8", *common], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p.parent for p in runs.glob("tau_sweep/multirun-*/*/metrics.json"))
    assert len(jobs) == 3, out.stdout + out.stderr
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr  # the launcher config was used
    taus = set()
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text())
        assert m["rating"]["n_new"] == 0 and m["heads"]["embeddings_cached"] and m["heads"]["head_scores_cached"]
        table = pd.read_csv(job / "main_table.csv").set_index("method")
        taus.add(json.loads(table.loc["encore", "params"])["tau"])
        assert {"tau_to_inf", "tau_to_zero", "single_rule"} <= set(table.index)
    assert taus == {0.5, 2.0, 8.0}

    # Figures are rebuilt from the run directories alone.
    fig = subprocess.run([sys.executable, "experiments/make_figures.py", str(runs), "--out", str(tmp_path / "fig")],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert fig.returncode == 0, fig.stderr
    for name in ("entropy_vs_accuracy", "main_results", "accuracy_vs_tau", "encore_weights",
                 "rating_distributions_demo-train"):
        for ext in ("png", "pdf", "csv"):
            assert (tmp_path / "fig" / f"{name}.{ext}").exists(), f"{name}.{ext}"
    sweep = pd.read_csv(tmp_path / "fig" / "accuracy_vs_tau.csv")
    assert sorted(sweep["tau"]) == [0.5, 2.0, 8.0]


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_correlation_on_real_hh_rlhf(tmp_path, cache):
    cfg = make_cfg("data=hh_rlhf_harmless", f"data.path={SHARED_HH}", "data.limit=150", cache=cache)
    m = run_correlation(cfg, tmp_path / "run")
    c = m["correlation"]
    assert c["n_rules"] == 10 and c["n_pairs"] == 150
    assert -1 <= c["pearson_r"] <= 1 and c["pearson_r_ci_low"] <= c["pearson_r"] <= c["pearson_r_ci_high"]
    stats = pd.read_csv(tmp_path / "run" / "rule_stats.csv")
    assert stats["n_pairs"].eq(150).all()


def test_a_crashed_stage_is_recorded_as_failed(tmp_path, cache, monkeypatch):
    import encore.run.pipeline as pipeline
    from encore.run.tracking import Tracker

    codes = []

    class Recorder(Tracker):
        def finish(self, exit_code: int = 0) -> None:
            codes.append(exit_code)

    monkeypatch.setattr(pipeline, "_tracker", lambda cfg, run_dir, job: Recorder())
    run_correlation(make_cfg("data.limit=10", cache=cache), tmp_path / "ok")

    def boom(*a, **k):
        raise RuntimeError("the study broke")

    monkeypatch.setattr(pipeline, "stage_study", boom)
    with pytest.raises(RuntimeError, match="the study broke"):
        run_correlation(make_cfg("data.limit=10", cache=cache), tmp_path / "crash")
    assert codes == [0, 1]


def test_study_refuses_an_all_nan_table(tmp_path, cache):
    from encore.run.pipeline import stage_study
    from encore.rating.engine import Ratings

    v = np.random.default_rng(0).uniform(size=(6, 2, 3))
    v[:, 1] = np.nan  # no rejected response rated: no rule has an accuracy
    reasons = np.where(np.isnan(v), "refused", "").astype(object)
    with pytest.raises(RuntimeError, match="all NaN"):
        stage_study(make_cfg(cache=cache), Ratings(list("abcdef"), ["x", "y", "z"], v, reasons), tmp_path)
    assert not (tmp_path / "rule_stats.csv").exists()


def test_no_method_sees_the_evaluation_labels(tmp_path, cache):
    """Swapping chosen and rejected in every evaluation pair leaves every method's weights unchanged: weights are
    fitted on the training pairs only (a gate's mean weight depends on the evaluation prompts, not their labels)."""
    pairs = load_demo("eval").groupby("subset").head(8).reset_index(drop=True)  # all five Safety subsets
    flipped = pairs.rename(columns={"chosen": "rejected", "rejected": "chosen"})
    weights = []
    for name, table in (("eval.jsonl", pairs), ("flipped.jsonl", flipped)):
        table[["prompt", "chosen", "rejected", "subset"]].to_json(tmp_path / name, orient="records", lines=True)
        run = tmp_path / name.split(".")[0]
        run_evaluate(make_cfg("eval=reward_bench", f"eval.path={tmp_path / name}", "data.limit=40", cache=cache), run)
        weights.append(pd.read_csv(run / "weights_long.csv"))
        main = pd.read_csv(run / "main_table.csv").set_index("method")
    pd.testing.assert_frame_equal(weights[0], weights[1])
    assert set(weights[0]["method"]) >= {"encore", "uniform", "random", "single_rule", "bt_optimized", "gating"}
    assert main["safety"].notna().all()  # both runs really evaluated
