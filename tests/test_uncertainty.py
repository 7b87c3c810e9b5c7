"""Intervals and p-values that say what they are and that the data can support (encore.stats' docstring): too few
replicates are refused at the settings check, too few pairs give an interval printed as unavailable, the interval on
r and its p-value are labelled, and the permutation test is exact where it can be."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_cfg
from encore.stats import (bootstrap_ci, bootstrap_correlation_ci, bootstrap_rule_accuracy_ci, min_replicates,
                          paired_permutation_test, supports_interval)


def test_the_fewest_replicates_and_pairs_an_interval_needs():
    assert (min_replicates(0.95), min_replicates(0.99), min_replicates(0.9)) == (39, 199, 19)
    # distinct resamples of n pairs: C(2n-1, n) = 35 for 4, 126 for 5; strata multiply: 3^3 = 27, 3^4 = 81
    assert [supports_interval([n]) for n in (0, 1, 4, 5, 1000)] == [False, False, False, True, True]
    assert not supports_interval([2, 2, 2]) and supports_interval([2, 2, 2, 2]) and not supports_interval([1] * 50)


def test_too_few_pairs_or_replicates_give_no_interval_and_enough_give_one():
    rng = np.random.default_rng(0)
    c, r = rng.uniform(size=(2, 5, 4))
    assert np.isnan(bootstrap_correlation_ci(c[:4], r[:4], n_boot=200)["pearson_r_ci_low"])
    assert np.isfinite(bootstrap_correlation_ci(c, r, n_boot=200)["pearson_r_ci_low"])
    assert np.isnan(bootstrap_correlation_ci(c, r, n_boot=38)["pearson_r_ci_high"])
    c[1:, 0] = np.nan  # rule 0 rated on both sides for 1 pair only
    lo, hi = bootstrap_rule_accuracy_ci(c, r, n_boot=200)
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and np.isfinite(lo[1:]).all()
    assert all(np.isnan(bootstrap_rule_accuracy_ci(c, r, n_boot=1)[0]))  # n_boot = 1: none
    x = rng.integers(0, 2, 10).astype(float)
    assert np.isnan(bootstrap_ci(x[:4], np.array(["a"] * 4), lambda v, s: v.mean(), n_boot=200)).all()
    assert np.isfinite(bootstrap_ci(x, np.array(["a"] * 10), lambda v, s: v.mean(), n_boot=200)).all()


def test_the_permutation_test_is_exact_when_every_sign_pattern_fits():
    a = np.ones(8)
    assert paired_permutation_test(a, np.zeros(8), n_perm=256) == 2 / 256  # only all + and all - reach |T|
    rng = np.random.default_rng(3)
    d, w = rng.normal(size=10), rng.uniform(size=10)
    t = abs(w @ d)
    hits = sum(abs(w @ (d * np.array(s))) >= t - 1e-12 for s in itertools.product((-1, 1), repeat=10))
    assert paired_permutation_test(d, np.zeros(10), w, n_perm=1024) == hits / 1024
    assert paired_permutation_test(d, np.zeros(10), w, n_perm=1023) != hits / 1024  # sampled: (1 + count) / 1024


def test_one_pair_says_its_interval_is_unavailable(tmp_path, cache):
    from encore.run.pipeline import run_correlation

    m = run_correlation(make_cfg("data.limit=1", cache=cache), tmp_path / "run")
    corr = json.loads((tmp_path / "run" / "correlation.json").read_text())
    assert corr["pearson_r_ci_low"] is None and corr["pearson_r_ci_high"] is None
    assert "(95% CI unavailable: too few pairs)" in m["summary"]
    stats = pd.read_csv(tmp_path / "run" / "rule_stats.csv")
    assert stats[["accuracy_ci_low", "accuracy_ci_high"]].isna().all().all()


@pytest.mark.parametrize("override, smallest", [("stats.n_boot=1", 39), ("stats.n_boot=38", 39),
                                                ("stats.n_perm=0", 19), ("stats.n_perm=18", 19)])
def test_too_few_replicates_are_refused_naming_the_smallest_that_works(tmp_path, cache, override, smallest):
    from encore.run.pipeline import run_correlation
    from encore.errors import SettingError

    with pytest.raises(SettingError, match=rf"{override.split('=')[0]}=\d+: .*at least {smallest}"):
        run_correlation(make_cfg(override, cache=cache), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_the_interval_and_the_p_value_say_what_each_is_and_why_they_may_disagree():
    from encore.report.style import Names
    from encore.run.summary import study_line

    corr = {"pearson_r": -0.74, "pearson_r_ci_low": -0.82, "pearson_r_ci_high": -0.63, "pearson_p": 0.16,
            "spearman_rho": -0.6, "n_rules": 10, "n_pairs": 500}
    line = study_line(corr, "d", None)
    assert ("r = -0.74 (95% CI -0.82 to -0.63, pair bootstrap, rules fixed), p = 0.16 over K = 10 rules (they differ "
            "because they ask different things: the interval, how r moves with other pairs for these rules; p, "
            "whether 10 rules are enough to tell r from 0); Spearman rho = -0.60") in line
    agree = study_line({**corr, "pearson_p": 0.01}, "d", None)
    assert "p = 0.01 over K = 10 rules; Spearman" in agree and "differ" not in agree
    assert Names  # the summary's display names are unused here
