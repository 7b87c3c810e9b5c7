"""The study: per-rule rating entropy, per-rule accuracy, and their correlation. Pure numpy/scipy, no I/O.

Missing ratings are NaN throughout: entropy ignores them, accuracy uses only pairs where both sides are rated.

The bins, exactly. With B bins, bin b (0 <= b < B) holds the ratings r with b/B <= r < (b+1)/B, and the last bin
is closed: it also holds r = 1. The edges are the exact fractions k/B, not their floating-point approximations:
a rating within ``EDGE_TOL`` (1e-6) of an edge k/B is taken to lie on it. So a rating meant as k/B (0.3, 0.7 or
2/3 on a declared label scale) lands in bin k (B-1 for k = B) whatever its last bits: whether it was computed as 0.3
or 1 - 0.7, read back from JSONL or CSV, or carried as a float32 (0.7 -> 0.699999988). Plain ``int(r * B)`` puts
0.3, 0.6, 0.7 in bins 3, 6, 7 and ``np.histogram`` in 2, 5, 6: both follow the accidents of binary fractions.

Ties, exactly. A pair ties under a rule when its two ratings differ by at most ``TIE_TOL`` (1e-12): equal up to
float64 rounding (a value read back from a text file off by one unit in the last place still ties: one ulp is at
most 1.1e-16 in [0, 1]), while two distinct float32 ratings above 1e-5 (one float32 ulp apart at least 9e-13) stay
distinct.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

TIES = ("wrong", "half", "drop")
EDGE_TOL = 1e-6  # a rating this close to a bin edge k/B lies on it
TIE_TOL = 1e-12  # two ratings of a pair this close are a tie


def entropy_unit(log_base: str | float) -> str:
    """The unit of an entropy taken in ``log_base`` (``study.log_base``): ``e`` nats, 2 bits, 10 hartleys, else
    "log base b"."""
    b = str(log_base)
    return {"e": "nats", "2": "bits", "2.0": "bits", "10": "hartleys", "10.0": "hartleys"}.get(b, f"log base {b}")


def discretise(ratings: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin ratings in [0, 1] into ``bins`` equal-width bins: bin b holds [b/B, (b+1)/B), the last also holds 1.0,
    with a rating within ``EDGE_TOL`` of an edge k/B on that edge (see the module docstring).

    NaN (missing) maps to -1. Values outside [0, 1] are an error: raters must map their output into [0, 1].
    """
    if bins < 2:
        raise ValueError(f"study.bins={bins}: entropy needs at least 2 bins")
    r = np.asarray(ratings, dtype=float)
    finite = ~np.isnan(r)
    if np.any((r[finite] < 0) | (r[finite] > 1)):
        bad = r[finite][(r[finite] < 0) | (r[finite] > 1)][:3]
        raise ValueError(f"ratings must lie in [0, 1]; found e.g. {bad.tolist()}")
    out = np.full(r.shape, -1, dtype=np.int64)
    x = r[finite] * bins
    edge = np.rint(x)
    x = np.where(np.abs(x - edge) <= EDGE_TOL * bins, edge, x)  # |r - k/B| <= EDGE_TOL: on the edge k/B
    out[finite] = np.minimum(np.floor(x).astype(np.int64), bins - 1)
    return out


def rating_entropy(ratings: np.ndarray, bins: int = 10, base: float = np.e) -> np.ndarray:
    """H_k = -Σ_b p_kb log p_kb over the discretised ratings of rule k (ratings: (M, K), all rated responses).

    Natural log by default; 0 log 0 = 0, so a rule with constant ratings has H = 0 (valid, not an error).
    Returns (K,); NaN for a rule with no non-missing rating.
    """
    d = _discretise_2d(ratings, bins)
    k = d.shape[1]
    flat = (d + np.arange(k) * bins)[d >= 0]  # rule k's bin b -> k * bins + b
    return entropy_from_counts(np.bincount(flat, minlength=k * bins).reshape(k, bins), base)


def bin_onehot(ratings: np.ndarray, bins: int = 10) -> np.ndarray:
    """(M, K) ratings -> (M, K, bins) bin membership (a missing rating is all zeros): any weighting of the M
    responses, summed, gives bin counts (the bootstrap weights them by how often each pair was drawn)."""
    d = _discretise_2d(ratings, bins)
    return (d[..., None] == np.arange(bins)).astype(float)


def entropy_from_counts(counts: np.ndarray, base: float = np.e) -> np.ndarray:
    """(..., bins) counts -> (...) entropy -Σ p log p with p = counts / total; NaN where the total is 0."""
    c = np.asarray(counts, float)
    total = c.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = c / total
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1) / np.log(base)
    return np.where(total[..., 0] > 0, h, np.nan)


def _discretise_2d(ratings: np.ndarray, bins: int) -> np.ndarray:
    d = discretise(ratings, bins)
    if d.ndim != 2:
        raise ValueError(f"ratings must be 2-D (responses, rules); got shape {d.shape}")
    return d


def rule_accuracy(chosen: np.ndarray, rejected: np.ndarray, ties: str = "wrong") -> tuple[np.ndarray, np.ndarray]:
    """Per rule, the share of pairs where ψ_k(chosen) > ψ_k(rejected) (by more than ``TIE_TOL``). Inputs: (N, K).

    ``ties``: ``wrong`` counts a tie as a miss (RewardBench's convention), ``half`` as 0.5, ``drop`` excludes it.
    Returns (accuracy (K,), number of pairs used (K,)); pairs with a missing side are excluded.
    """
    credit, used = accuracy_terms(chosen, rejected, ties)
    n = used.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, credit.sum(axis=0) / np.maximum(n, 1), np.nan)
    return acc, n.astype(int)


def accuracy_terms(chosen: np.ndarray, rejected: np.ndarray, ties: str = "wrong") -> tuple[np.ndarray, np.ndarray]:
    """Per pair and rule (N, K): the credit (1 win, ½ or 0 tie, 0 loss; 0 where unused) and whether the pair counts
    (both sides rated; ties excluded under ``drop``). Accuracy is Σ credit / Σ used over any weighting of pairs.
    A win is ψ(chosen) - ψ(rejected) > ``TIE_TOL``; a tie |ψ(chosen) - ψ(rejected)| <= ``TIE_TOL``."""
    if ties not in TIES:
        raise ValueError(f"study.ties={ties!r}; use one of {TIES}")
    c, r = np.asarray(chosen, float), np.asarray(rejected, float)
    if c.shape != r.shape:
        raise ValueError(f"chosen {c.shape} and rejected {r.shape} ratings differ in shape")
    ok = ~(np.isnan(c) | np.isnan(r))
    with np.errstate(invalid="ignore"):
        gap = c - r
    win, tie = (gap > TIE_TOL) & ok, (np.abs(gap) <= TIE_TOL) & ok
    used = ok & ~tie if ties == "drop" else ok
    credit = win + (0.5 if ties == "half" else 0.0) * tie
    return credit * used, used.astype(float)


def tie_share(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """Per rule, the share of pairs rated on both sides whose two ratings are equal (N, K) -> (K,); NaN for a rule
    with no such pair. High for binary or coarse ratings, where the tie policy decides much of the accuracy."""
    rated = accuracy_terms(chosen, rejected, "wrong")[1].sum(axis=0)  # pairs rated on both sides
    untied = accuracy_terms(chosen, rejected, "drop")[1].sum(axis=0)  # the same, ties left out
    return np.where(rated > 0, (rated - untied) / np.maximum(rated, 1), np.nan)


def correlation(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson r and Spearman ρ between x and y (e.g. entropy and accuracy over rules), with two-sided p-values.

    Rules with NaN in either are dropped. Fewer than 3 points, or a constant side, gives NaN (stated, not raised).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    out = {"n_rules": int(ok.sum()), "pearson_r": np.nan, "pearson_p": np.nan, "spearman_rho": np.nan, "spearman_p": np.nan}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    out.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue),
               spearman_rho=float(sr.statistic), spearman_p=float(sr.pvalue))
    return out


def bins_used(ratings: np.ndarray, bins: int = 10) -> np.ndarray:
    """(M, K) ratings -> (K,) how many of the ``bins`` bins hold at least one rating of each rule. A rule whose
    ratings sit in a narrow band (an LLM's P(Yes) in 0.18-0.65 uses 4-6 of 10) has an entropy that says as much about
    the bin edges as about the rater."""
    d = _discretise_2d(ratings, bins)
    return np.array([np.unique(col[col >= 0]).size for col in d.T])


def binning_robustness(ratings: np.ndarray, accuracy: np.ndarray, bins: int = 10,
                       others: tuple[int, ...] = (8, 12)) -> dict:
    """How much the study moves with the bin count: for B in ``bins`` and ``others``, the entropy–accuracy Pearson r
    and Spearman ρ, and the Spearman correlation between the rules' entropy ranking at B and at ``bins`` (1: the
    same order). ratings (M, K), accuracy (K,); entropies in nats (a rank or a correlation does not see the unit)."""
    H0 = rating_entropy(ratings, bins)
    by = {}
    for b in sorted({int(bins), *map(int, others)}):
        H = rating_entropy(ratings, b)
        c = correlation(H, accuracy)
        ok = np.isfinite(H) & np.isfinite(H0)
        same = (float(stats.spearmanr(H[ok], H0[ok]).statistic)
                if ok.sum() >= 3 and np.ptp(H[ok]) > 0 and np.ptp(H0[ok]) > 0 else np.nan)
        by[str(b)] = {"pearson_r": c["pearson_r"], "spearman_rho": c["spearman_rho"], "ranking_vs_run_bins": same}
    used = bins_used(ratings, bins)
    return {"bins": int(bins), "bins_used_min": int(used.min()), "bins_used_max": int(used.max()), "by_bins": by}
