"""Uncertainty: stratified bootstrap intervals, paired permutation tests, and a bootstrap interval for r.

Pairs are the unit of resampling. Where a score weights subsets (RewardBench Safety), resampling is stratified by
subset, so every replicate keeps the subset sizes and the weighting is unchanged.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from encore.entropy import correlation, rating_entropy, rule_accuracy


def stratified_indices(subsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap replicate: indices drawn with replacement within each subset."""
    out = []
    for s in np.unique(subsets):
        idx = np.flatnonzero(subsets == s)
        out.append(rng.choice(idx, size=idx.size, replace=True))
    return np.concatenate(out)


def bootstrap_ci(values: np.ndarray, subsets: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float],
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(values[idx], subsets[idx])`` over stratified bootstrap replicates."""
    if n_boot < 1:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = stratified_indices(subsets, rng)
        reps[b] = statistic(values[idx], subsets[idx])
    a = (1 - level) / 2
    return float(np.nanquantile(reps, a)), float(np.nanquantile(reps, 1 - a))


def paired_permutation_test(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None,
                            n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value for H0: methods a and b are exchangeable on each pair (per-pair scores a_i, b_i).

    Statistic T = Σ_i w_i (a_i - b_i) (w = per-pair weights of the score, e.g. RewardBench's subset weighting);
    under H0 each difference's sign is a fair coin. p = (1 + #{|T*| >= |T|}) / (1 + n_perm).
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    w = np.full(d.size, 1.0 / d.size) if weights is None else np.asarray(weights, float)
    t_obs = abs(float(w @ d))
    if t_obs == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    nz = d != 0
    wd = (w * d)[nz]
    count = 0
    for start in range(0, n_perm, 1000):
        m = min(1000, n_perm - start)
        signs = rng.choice((-1.0, 1.0), size=(m, wd.size))
        count += int((np.abs(signs @ wd) >= t_obs - 1e-12).sum())
    return (1 + count) / (1 + n_perm)


def bootstrap_correlation_ci(chosen: np.ndarray, rejected: np.ndarray, bins: int = 10, ties: str = "wrong",
                             n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Percentile interval for the entropy–accuracy Pearson r and Spearman ρ, resampling pairs (N, K) inputs.

    Each replicate recomputes every rule's entropy and accuracy on the resampled pairs, so the interval covers
    the uncertainty of both axes.
    """
    rng = np.random.default_rng(seed)
    n = chosen.shape[0]
    rs, rhos = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        c, r = chosen[idx], rejected[idx]
        H = rating_entropy(np.concatenate([c, r]), bins)
        acc, _ = rule_accuracy(c, r, ties)
        res = correlation(H, acc)
        rs[b], rhos[b] = res["pearson_r"], res["spearman_rho"]
    a = (1 - level) / 2
    q = lambda x: (float(np.nanquantile(x, a)), float(np.nanquantile(x, 1 - a))) if np.isfinite(x).any() else (np.nan, np.nan)  # noqa: E731
    (r_lo, r_hi), (rho_lo, rho_hi) = q(rs), q(rhos)
    return {"pearson_r_ci_low": r_lo, "pearson_r_ci_high": r_hi, "spearman_rho_ci_low": rho_lo,
            "spearman_rho_ci_high": rho_hi, "n_boot": n_boot, "level": level}
