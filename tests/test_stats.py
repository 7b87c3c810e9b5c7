"""Intervals that fit the design (encore.stats' docstring): the bootstrap is stratified by subset only where every
subset holds MIN_STRATUM pairs, else pairs are resampled; the label says which; nominal 95% intervals cover the true
accuracy in about 95% of simulated draws for RewardBench-like subsets and for tiny ones; undefined replicates are
counted."""

import numpy as np
import pytest

from encore.data.rewardbench import SAFETY_COUNTS
from encore.evaluate import evaluate_rewards, headline, safety_score
from encore.stats import (MIN_STRATUM, bootstrap_correlation_ci, bootstrap_interval, bootstrap_rule_accuracy_ci,
                          resampling_basis)

TINY = np.repeat([f"own-{i}" for i in range(8)], [1, 2, 2, 3, 2, 2, 2, 2])  # 16 pairs in 8 subsets of 1-3
REWARDBENCH = np.repeat(list(SAFETY_COUNTS), list(SAFETY_COUNTS.values()))  # 100/100/154/250/136


def test_tiny_subsets_resample_pairs_and_say_so():
    """13 of 16 right in 8 subsets of 1-3 pairs: stratifying would let the one-pair subset add no variance and print
    75.0 to 87.5; resampling pairs gives the honest 62.5 to 100 (the issue's numbers), and the row says which."""
    correct = np.ones(16)
    correct[[1, 5, 11]] = 0
    mean = lambda c, _: float(c.mean())  # noqa: E731
    iv = bootstrap_interval(correct, TINY, mean, n_boot=2000, seed=0)
    assert iv.basis == "pairs" and (iv.low, iv.high) == (0.625, 1.0)
    forced = bootstrap_interval(correct, TINY, mean, n_boot=2000, seed=0, min_stratum=1)
    assert forced.basis == "stratified" and forced.high - forced.low < iv.high - iv.low  # too narrow
    row, _ = evaluate_rewards("m", np.stack([correct, np.zeros(16)], -1)[None], TINY, n_boot=200)
    assert row["safety_ci_basis"].startswith("pair bootstrap") and row["safety_ci_n_undefined"] == 0
    assert resampling_basis(REWARDBENCH) == "stratified" and resampling_basis(TINY) == "pairs"
    assert resampling_basis(np.repeat(["a", "b"], [MIN_STRATUM, MIN_STRATUM - 1])) == "pairs"
    row, _ = evaluate_rewards("m", np.stack([np.ones(740), np.zeros(740)], -1)[None], REWARDBENCH, n_boot=50)
    assert row["safety_ci_basis"].startswith("bootstrap stratified by subset")


def test_undefined_replicates_are_counted_not_dropped_silently():
    """Rules' accuracies differ only through pair 0; a replicate that misses it (P = 0.8^5 = 0.33) leaves r
    undefined. Each such replicate is counted; so are NaN replicates of any statistic."""
    c = np.array([[1.0, 0.0, 0.0]] + [[1.0, 1.0, 1.0]] * 4)
    r = np.array([[0.0, 1.0, 1.0]] + [[0.0, 0.0, 0.0]] * 4)
    c[:, 1], c[:, 2] = c[:, 1] * 0.9, c[:, 2] * 0.7  # three entropies
    out = bootstrap_correlation_ci(c, r, n_boot=1000, seed=0)
    assert 0.28 * 1000 < out["pearson_r_n_undefined"] < 0.39 * 1000
    assert out["spearman_rho_n_undefined"] == out["pearson_r_n_undefined"]
    iv = bootstrap_interval(np.arange(20.0), np.array(["a"] * 20), lambda v, _: np.nan if v.min() > 0 else v.mean(),
                            n_boot=400, seed=0)
    assert 0.26 * 400 < iv.n_undefined < 0.46 * 400 and np.isfinite(iv.low)  # P(0 never drawn) = 0.95^20 = 0.36
    c, r = np.random.default_rng(0).uniform(size=(2, 6, 2))
    c[1:, 0] = np.nan  # rule 0 has one rated pair: undefined whenever it is not drawn
    *_, undefined = bootstrap_rule_accuracy_ci(c, r, n_boot=300, with_undefined=True)
    assert undefined[1] == 0 and 0.25 * 300 < undefined[0] < 0.42 * 300  # (5/6)^6 = 0.33


def _coverage(subsets: np.ndarray, acc: dict[str, float], draws: int, n_boot: int,
              min_stratum: int = MIN_STRATUM) -> tuple[float, str]:
    """Share of draws whose 95% interval of the headline (Safety where the subsets are RewardBench's, else the
    plain mean) covers its true value, pairs drawn correct with their subset's probability."""
    p = np.array([acc[s] for s in subsets])
    truth = safety_score(acc)
    truth = truth if np.isfinite(truth) else float(p.mean())
    rng, hits = np.random.default_rng(1), 0
    for d in range(draws):
        iv = bootstrap_interval((rng.uniform(size=p.size) < p).astype(float), subsets, headline, n_boot=n_boot, seed=d,
                                min_stratum=min_stratum)
        hits += iv.low <= truth <= iv.high
    return hits / draws, iv.basis


@pytest.mark.slow
def test_nominal_95_percent_intervals_cover_the_true_accuracy_about_95_percent_of_the_time():
    """200 draws each (a coverage of 95% has a standard error of 1.5 points). RewardBench-like subsets, stratified:
    about 95%. 16 pairs in 8 subsets (mean accuracy 0.7), resampled as pairs: about 95% too, where stratifying them
    (what main did) covers far less. At 16 pairs the coverage of any percentile interval moves with the accuracy
    itself (0/1 outcomes: at 0.9 all 16 are right in a fifth of draws and the interval has zero width); that limit is
    stated in docs/experiments.md."""
    rb = dict(zip(SAFETY_COUNTS, (0.6, 0.7, 0.8, 0.9, 0.75)))
    cover, basis = _coverage(REWARDBENCH, rb, 200, 199)
    assert basis == "stratified" and 0.90 <= cover <= 0.99, cover
    tiny = dict(zip(dict.fromkeys(TINY), (0.5, 0.6, 0.7, 0.8, 0.9, 0.7, 0.6, 0.8)))
    cover, basis = _coverage(TINY, tiny, 200, 199)
    assert basis == "pairs" and 0.90 <= cover <= 0.99, cover
    forced, basis = _coverage(TINY, tiny, 200, 199, min_stratum=1)  # stratified by its 1-3-pair subsets
    assert basis == "stratified" and forced < 0.85, forced
