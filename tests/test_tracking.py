"""wandb mirrors: the scores artefact is logged once per content (the jobs of a sweep share it), named runs."""

import pytest

from encore.tracking import WandbTracker, files_digest


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
