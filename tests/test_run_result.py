"""A run's result does not wait on its figures: metrics.json (what make_figures.py finds runs by) and summary.txt
are written before the first figure is drawn, so a slow or failing figure never hides what the run found."""

import json

import pytest

from encore.run.pipeline import run_correlation

from conftest import make_cfg


def test_summary_and_metrics_are_written_before_the_figures(tmp_path, cache, monkeypatch):
    import encore.run.pipeline as pipeline

    seen = {}

    def figures_that_fail(run_dir, *a, **k):
        seen["then"] = sorted(p.name for p in run_dir.iterdir())
        raise RuntimeError("a figure broke")

    monkeypatch.setattr(pipeline, "run_figures", figures_that_fail)
    with pytest.raises(RuntimeError, match="a figure broke"):
        run_correlation(make_cfg("data.limit=10", cache=cache), tmp_path / "run")
    assert {"metrics.json", "summary.txt"} <= set(seen["then"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["summary"] == (tmp_path / "run" / "summary.txt").read_text().strip()
    assert metrics["correlation"]["n_rules"] == 10
