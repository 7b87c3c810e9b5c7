"""Entropy that says how it was measured: every study reports how many bins each rule's ratings use, r and the
rules' entropy ranking under 8, 10 and 12 bins (correlation.json ``binning``, a line in the summary), and warns
where a rule uses fewer than half the bins."""

import json

import numpy as np
import pytest
from scipy import stats

from conftest import make_cfg
from encore.entropy import bins_used, binning_robustness, correlation, rating_entropy, rule_accuracy
from encore.rating.engine import Ratings
from encore.report.style import Names
from encore.run.study import stage_study
from encore.run.summary import summary_text


def test_bins_used_counts_the_occupied_bins_exactly():
    r = np.array([[0.0, 0.18, np.nan], [0.05, 0.65, 0.5], [0.95, 0.31, 0.5], [1.0, 0.44, 0.5]])
    assert bins_used(r, 10).tolist() == [2, 4, 1]  # 0/0.05 share bin 0; 0.95 and 1.0 share bin 9
    assert bins_used(r, 2).tolist() == [2, 2, 1]


def test_binning_robustness_is_the_study_recomputed_under_each_bin_count():
    rng = np.random.default_rng(0)
    c, r = rng.uniform(0.18, 0.65, size=(2, 30, 6))  # a narrow band, as SmolLM2's
    acc, _ = rule_accuracy(c, r)
    flat = np.concatenate([c, r])
    out = binning_robustness(flat, acc, 10, (8, 12))
    assert list(out["by_bins"]) == ["8", "10", "12"] and out["bins"] == 10
    for b in (8, 10, 12):
        H = rating_entropy(flat, b)
        assert out["by_bins"][str(b)]["pearson_r"] == pytest.approx(correlation(H, acc)["pearson_r"])
        assert out["by_bins"][str(b)]["ranking_vs_run_bins"] == pytest.approx(
            stats.spearmanr(H, rating_entropy(flat, 10)).statistic)
    assert out["by_bins"]["10"]["ranking_vs_run_bins"] == pytest.approx(1.0)
    assert (out["bins_used_min"], out["bins_used_max"]) == (int(bins_used(flat).min()), int(bins_used(flat).max()))


def test_a_study_in_a_narrow_band_reports_its_bins_and_warns(tmp_path, caplog):
    """Ratings in 0.21-0.59 use at most 4 of 10 bins: rule_stats.csv has bins_used, correlation.json the binning
    block with its warning, and the summary says so."""
    rng = np.random.default_rng(1)
    n, k = 40, 5
    values = rng.uniform(0.21, 0.59, size=(n, 2, k))  # bins 2-5 only
    values[:, :, 0] = rng.uniform(0, 1, size=(n, 2))  # one rule uses the whole scale
    ratings = Ratings([f"p{i}" for i in range(n)], [f"rule{j}" for j in range(k)], values,
                      np.full(values.shape, "", dtype=object))
    cfg = make_cfg("stats.n_boot=39", cache=tmp_path / "cache")
    stats_, corr = stage_study(cfg, ratings, tmp_path)
    assert stats_["bins_used"].tolist()[0] == 10 and stats_["bins_used"][1:].max() <= 4
    saved = json.loads((tmp_path / "correlation.json").read_text())
    assert set(saved["binning"]["by_bins"]) == {"8", "10", "12"}
    assert "4 of 5 rules use fewer than half of the 10 entropy bins" in saved["binning"]["warning"]
    assert any("binning artefact" in r.getMessage() for r in caplog.records)
    text = summary_text({"job": "correlation", "dataset": "x", "correlation": saved, "setup": {}}, Names.from_config(None))
    line = next(x for x in text.splitlines() if x.startswith("entropy bins:"))
    assert line.startswith(f"entropy bins: rules use {stats_['bins_used'].min()}-10 of 10 bins; Pearson r = ")
    assert " at 8 / 10 / 12 bins; rule ranking by entropy against 10 bins: Spearman " in line and "WARNING" in line
