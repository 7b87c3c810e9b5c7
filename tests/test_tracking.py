"""wandb mirrors: the scores artefact is logged once per content (the jobs of a sweep share it), named runs."""

import os

import pytest

from encore.run.tracking import WandbTracker, files_digest


def test_the_scores_artefact_is_logged_once_per_content(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    scores = tmp_path / "head_scores.parquet"
    scores.write_bytes(b"same bytes in every sweep job")
    logged = []
    for job in range(2):
        t = WandbTracker(tmp_path / f"run{job}", {"job": job}, mode="offline", name=f"tau_sweep job={job}")
        monkeypatch.setattr(t.run, "log_artifact", lambda art: logged.append(art.name))
        t.log_artifact("tau_sweep-scores", "scores", [scores], seen_dir=tmp_path / "seen")
        assert t.run.summary["scores_digest"] == files_digest([scores]) and t.run.name == f"tau_sweep job={job}"
        t.finish()
    assert logged == ["tau_sweep-scores"]
    scores.write_bytes(b"new content")  # new scores: logged again
    t = WandbTracker(tmp_path / "run2", {}, mode="offline")
    monkeypatch.setattr(t.run, "log_artifact", lambda art: logged.append(art.name))
    t.log_artifact("tau_sweep-scores", "scores", [scores], seen_dir=tmp_path / "seen")
    t.finish()
    assert logged == ["tau_sweep-scores", "tau_sweep-scores"]


def test_wandb_leaves_nothing_outside_the_run_directory(tmp_path, monkeypatch):
    """wandb's staged artefact copies (~/.local/share/wandb/artifacts/staging, a copy of ratings.parquet per run)
    and its service logs (~/.cache/wandb/logs) grew with every run; now each run's wandb files are under its own
    directory, and the user's own WANDB_* settings come back after the run."""
    pytest.importorskip("wandb")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "WANDB_DATA_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for job in range(2):
        run = tmp_path / "runs" / str(job)
        run.mkdir(parents=True)
        (run / "ratings.parquet").write_bytes(b"ratings of job %d" % job)
        t = WandbTracker(run, {"job": job}, mode="offline")
        t.log_artifact("demo-scores", "scores", [run / "ratings.parquet"])
        t.finish()
        assert list((run / "wandb" / "cache" / "wandb" / "logs").glob("core-debug-*.log"))  # this run's service
    assert [p for p in home.rglob("*")] == []
    assert "WANDB_DATA_DIR" not in os.environ and "WANDB_CACHE_DIR" not in os.environ
    assert not list(tmp_path.rglob("staging"))
