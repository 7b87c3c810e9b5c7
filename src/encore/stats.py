"""Uncertainty: stratified bootstrap intervals, paired permutation tests, and a bootstrap interval for r.

Pairs are the unit of resampling. Where a score weights subsets (RewardBench Safety), resampling is stratified by
subset, so every replicate keeps the subset sizes and the weighting is unchanged, but only where every subset holds
at least :data:`MIN_STRATUM` (10) pairs; otherwise the pairs are resampled as one sample (:func:`resampling_basis`).
Why: resampling n pairs within a stratum gives its mean a variance of σ̂²/n with the plug-in σ̂² = (n-1)/n s², so a
stratum's share of the variance is understated by the factor (n-1)/n: nothing at n = 1 (a one-pair subset
contributes no variance at all), half at n = 2, under 10% from n = 10 on. With strata of 1-2 pairs the stratified
interval is far too narrow (13/16 correct in 8 subsets of 1-2 pairs: 75.0 to 87.5 stratified, 62.5 to 100 by
pairs), while pair resampling stays honest whatever the subset sizes (a subset a replicate misses is left out of
its weighting, as :func:`encore.evaluate.safety_score` leaves out absent subsets). ``tests/test_stats.py`` checks
by simulation that nominal 95% intervals cover the true accuracy in about 95% of draws for RewardBench-like subsets
and for tiny ones. Every interval says which resampling gave it, and how many replicates were undefined (a
statistic that is NaN on a replicate, e.g. r with a constant side): those are counted and reported, and the
percentiles are taken over the defined ones.

An interval the data cannot support is NaN (printed as unavailable), never a number. A percentile interval at level
1 - α needs B >= :func:`min_replicates` replicates ((B + 1) α/2 >= 1, so each tail holds one: 39 at 95%) and data
with at least B + 1 distinct resamples (n pairs have C(2n - 1, n): 5 pairs give 126, 4 give 35; stratified, the
product over subsets; :func:`supports_interval`). With fewer, every replicate repeats a handful of values and the
"interval" collapses (1 pair: zero width) or excludes its own estimate (B = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from encore.entropy import (accuracy_terms, bin_onehot, correlation, entropy_from_counts, rating_entropy,
                            rule_accuracy)


MIN_STRATUM = 10  # stratify by subset only when every subset has this many pairs (module docstring)


def resampling_basis(subsets: np.ndarray, min_stratum: int = MIN_STRATUM) -> str:
    """``stratified`` when there are several subsets and each has at least ``min_stratum`` pairs, else ``pairs``."""
    sizes = np.unique(np.asarray(subsets), return_counts=True)[1]
    return "stratified" if len(sizes) > 1 and sizes.min() >= min_stratum else "pairs"


def basis_label(basis: str, min_stratum: int = MIN_STRATUM) -> str:
    """How an interval's replicates were drawn, in words (main_table.csv ``safety_ci_basis``, the summary)."""
    return (f"bootstrap stratified by subset (every subset >= {min_stratum} pairs)" if basis == "stratified"
            else f"pair bootstrap (pairs resampled across subsets; stratified only when every subset has >= "
                 f"{min_stratum} pairs)")


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval, how it was drawn (``basis``: stratified or pairs) and how many of its
    ``n_boot`` replicates were undefined (NaN statistic, left out of the percentiles)."""

    low: float
    high: float
    basis: str
    n_boot: int
    n_undefined: int


def min_replicates(level: float = 0.95) -> int:
    """Smallest B with (B + 1)(1 - level)/2 >= 1: each tail of the percentile interval holds a replicate."""
    return math.ceil(2 / (1 - level) - 1e-9) - 1


def supports_interval(sizes: Iterable[int], level: float = 0.95) -> bool:
    """Whether resampling strata of these sizes can give B + 1 = min_replicates + 1 distinct resamples: Π_s C(2n_s-1,
    n_s) (multisets of n_s draws from n_s pairs) >= B + 1. A stratum of 0 or 1 pair adds nothing."""
    need, total = min_replicates(level) + 1, 1
    for n in sizes:
        total *= math.comb(2 * int(n) - 1, int(n)) if 0 < n < 40 else (need if n >= 40 else 1)
        if total >= need:
            return True
    return False


def stratified_indices(subsets: np.ndarray, rng: np.random.Generator,
                       strata: list[np.ndarray] | None = None) -> np.ndarray:
    """One bootstrap replicate: indices drawn with replacement within each subset (``strata``: each subset's
    indices in np.unique order, precomputed by a caller that draws many replicates)."""
    if strata is None:
        strata = [np.flatnonzero(subsets == s) for s in np.unique(subsets)]
    return np.concatenate([rng.choice(idx, size=idx.size, replace=True) for idx in strata])


def pair_indices(n: int, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap replicate of n pairs resampled as one sample."""
    return rng.integers(0, n, size=n)


def bootstrap_interval(values: np.ndarray, subsets: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float],
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                       min_stratum: int = MIN_STRATUM) -> Interval:
    """Percentile interval of ``statistic(values[idx], subsets[idx])`` over bootstrap replicates, stratified by
    subset only where :func:`resampling_basis` says the strata can carry it, else pairs resampled as one sample; NaN
    when ``n_boot`` or the data cannot support one (module docstring). Undefined replicates are counted."""
    subsets = np.asarray(subsets)
    basis = resampling_basis(subsets, min_stratum)
    sizes = np.unique(subsets, return_counts=True)[1] if basis == "stratified" else [len(subsets)]
    if n_boot < min_replicates(level) or not supports_interval(sizes, level):
        return Interval(np.nan, np.nan, basis, int(n_boot), 0)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    strata = [np.flatnonzero(subsets == s) for s in np.unique(subsets)]
    for b in range(n_boot):
        idx = stratified_indices(subsets, rng, strata) if basis == "stratified" else pair_indices(len(subsets), rng)
        reps[b] = statistic(values[idx], subsets[idx])
    ok = np.isfinite(reps)
    a = (1 - level) / 2
    if ok.sum() < min_replicates(level):  # too few defined replicates for either tail
        return Interval(np.nan, np.nan, basis, int(n_boot), int((~ok).sum()))
    return Interval(float(np.quantile(reps[ok], a)), float(np.quantile(reps[ok], 1 - a)), basis, int(n_boot),
                    int((~ok).sum()))


def bootstrap_ci(values: np.ndarray, subsets: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float],
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """(low, high) of :func:`bootstrap_interval`."""
    iv = bootstrap_interval(values, subsets, statistic, n_boot, seed, level)
    return iv.low, iv.high


def paired_permutation_test(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None,
                            n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value for H0: methods a and b are exchangeable on each pair (per-pair scores a_i, b_i).

    Statistic T = Σ_i w_i (a_i - b_i) (w = per-pair weights of the score, e.g. RewardBench's subset weighting);
    under H0 each difference's sign is a fair coin. With m pairs that differ and 2^m <= n_perm, every sign pattern
    is enumerated and p = #{|T*| >= |T|} / 2^m exactly; otherwise n_perm random patterns give
    p = (1 + #{|T*| >= |T|}) / (1 + n_perm).
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    w = np.full(d.size, 1.0 / d.size) if weights is None else np.asarray(weights, float)
    t_obs = abs(float(w @ d))
    if t_obs == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    nz = d != 0
    wd = (w * d)[nz]
    if 2 ** wd.size <= n_perm:  # exact: all 2^m sign patterns (the observed one among them)
        codes = np.arange(2 ** wd.size)[:, None] >> np.arange(wd.size) & 1  # (2^m, m) bits
        return float((np.abs((1.0 - 2.0 * codes) @ wd) >= t_obs - 1e-12).mean())
    count = 0
    for start in range(0, n_perm, 1000):
        m = min(1000, n_perm - start)
        signs = rng.choice((-1.0, 1.0), size=(m, wd.size))
        count += int((np.abs(signs @ wd) >= t_obs - 1e-12).sum())
    return (1 + count) / (1 + n_perm)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error over the m tests): sort ascending, p_(i) · (m - i + 1),
    made monotone by a running maximum, capped at 1; returned in the input order. NaN stays NaN."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adj
    return out


def bootstrap_correlation_ci(chosen: np.ndarray, rejected: np.ndarray, bins: int = 10, ties: str = "wrong",
                             n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                             chunk: int = 100) -> dict[str, float]:
    """Percentile interval for the entropy–accuracy Pearson r and Spearman ρ, resampling pairs (N, K) inputs.

    Each replicate recomputes every rule's entropy and accuracy on the resampled pairs, so the interval covers the
    uncertainty of both axes. Vectorised: a replicate is a count vector c_b (how often each pair was drawn), so
    bin histograms and accuracies are c_b-weighted sums, ``chunk`` replicates per matrix product. Resamples are the
    same draws as a loop of ``rng.integers(0, N, N)`` per replicate; :func:`_replicate` is that loop's body. The
    rules are held fixed: the interval says how much r would move with other pairs from the same source, not with
    other rules (the p-value of :func:`encore.entropy.correlation` treats the K rules as the sample). NaN when the
    pairs or ``n_boot`` cannot support an interval.
    """
    rng = np.random.default_rng(seed)
    c, r = np.asarray(chosen, float), np.asarray(rejected, float)
    n, k = c.shape
    if n_boot < min_replicates(level) or not supports_interval([n], level):
        return {"pearson_r_ci_low": np.nan, "pearson_r_ci_high": np.nan, "spearman_rho_ci_low": np.nan,
                "spearman_rho_ci_high": np.nan, "n_boot": n_boot, "level": level, "pearson_r_n_undefined": 0,
                "spearman_rho_n_undefined": 0}
    onehot = bin_onehot(c, bins) + bin_onehot(r, bins)  # (N, K, bins): both sides' bins per pair
    credit, used = accuracy_terms(c, r, ties)  # (N, K) each
    rs, rhos = [], []
    for start in range(0, n_boot, chunk):
        counts = np.stack([np.bincount(rng.integers(0, n, size=n), minlength=n) for _ in range(min(chunk, n_boot - start))])
        H = entropy_from_counts((counts @ onehot.reshape(n, -1)).reshape(-1, k, bins))  # (B, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = (counts @ credit) / (counts @ used)
        rs.append(_rowwise_pearson(H, acc))
        both = np.isfinite(H) & np.isfinite(acc)  # a rule missing on one axis leaves both rankings, as in the estimate
        rhos.append(_rowwise_pearson(_ranks(np.where(both, H, np.nan)), _ranks(np.where(both, acc, np.nan))))
    rs, rhos = np.concatenate(rs), np.concatenate(rhos)
    a = (1 - level) / 2
    q = lambda x: ((float(np.nanquantile(x, a)), float(np.nanquantile(x, 1 - a)))  # noqa: E731
                   if np.isfinite(x).sum() >= min_replicates(level) else (np.nan, np.nan))
    (r_lo, r_hi), (rho_lo, rho_hi) = q(rs), q(rhos)
    return {"pearson_r_ci_low": r_lo, "pearson_r_ci_high": r_hi, "spearman_rho_ci_low": rho_lo,
            "spearman_rho_ci_high": rho_hi, "n_boot": n_boot, "level": level,
            # replicates where r (ρ) is undefined (a constant side, < 3 rules): counted, left out of the percentiles
            "pearson_r_n_undefined": int((~np.isfinite(rs)).sum()),
            "spearman_rho_n_undefined": int((~np.isfinite(rhos)).sum())}


def bootstrap_rule_accuracy_ci(chosen: np.ndarray, rejected: np.ndarray, ties: str = "wrong", n_boot: int = 1000,
                               seed: int = 0, level: float = 0.95, chunk: int = 200,
                               with_undefined: bool = False) -> tuple[np.ndarray, ...]:
    """Percentile interval of each rule's accuracy (K,) over pairs resampled with replacement (N, K inputs); the
    same count-vector replicates as :func:`bootstrap_correlation_ci`. NaN for a rule whose pairs (rated on both
    sides) cannot support an interval, and for every rule when ``n_boot`` cannot. ``with_undefined``: also (K,) the
    count of replicates where the rule's accuracy is undefined (no pair of it drawn), left out of its percentiles."""
    rng = np.random.default_rng(seed)
    credit, used = accuracy_terms(np.asarray(chosen, float), np.asarray(rejected, float), ties)
    n = credit.shape[0]
    ok = np.array([supports_interval([m], level) for m in used.sum(axis=0).astype(int)])
    if n_boot < min_replicates(level):
        n_boot = 0  # no replicates: every interval NaN
    reps = []
    for start in range(0, n_boot, chunk):
        counts = np.stack([np.bincount(rng.integers(0, n, size=n), minlength=n) for _ in range(min(chunk, n_boot - start))])
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append((counts @ credit) / (counts @ used))
    k = credit.shape[1]
    if not reps:
        return (np.full(k, np.nan), np.full(k, np.nan)) + ((np.zeros(k, dtype=int),) if with_undefined else ())
    a = (1 - level) / 2
    r = np.concatenate(reps)
    undefined = (~np.isfinite(r)).sum(axis=0)
    ok &= len(r) - undefined >= min_replicates(level)
    import warnings

    with warnings.catch_warnings():  # a rule never rated on both sides has only NaN replicates: its interval is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        out = (np.where(ok, np.nanquantile(r, a, axis=0), np.nan), np.where(ok, np.nanquantile(r, 1 - a, axis=0), np.nan))
    return out + ((undefined,) if with_undefined else ())


def _replicate(chosen: np.ndarray, rejected: np.ndarray, idx: np.ndarray, bins: int, ties: str) -> dict[str, float]:
    """One bootstrap replicate, written plainly (the reference the vectorised version is tested against)."""
    c, r = chosen[idx], rejected[idx]
    acc, _ = rule_accuracy(c, r, ties)
    return correlation(rating_entropy(np.concatenate([c, r]), bins), acc)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (NaN stays NaN), as Spearman's ρ uses."""
    from scipy.stats import rankdata

    return rankdata(x, axis=-1, nan_policy="omit")


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r per row over the columns finite in both; NaN for rows with < 3 such columns or a constant side."""
    ok = np.isfinite(x) & np.isfinite(y)
    m = ok.sum(-1)
    xm = np.where(ok, x, 0).sum(-1, keepdims=True) / np.maximum(m, 1)[:, None]
    ym = np.where(ok, y, 0).sum(-1, keepdims=True) / np.maximum(m, 1)[:, None]
    dx, dy = np.where(ok, x - xm, 0), np.where(ok, y - ym, 0)
    sxx, syy = (dx * dx).sum(-1), (dy * dy).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (dx * dy).sum(-1) / np.sqrt(sxx * syy)
    bad = (m < 3) | (sxx <= 1e-24 * np.maximum(1, m)) | (syy <= 1e-24 * np.maximum(1, m))
    return np.where(bad, np.nan, np.clip(r, -1, 1))
