"""Composition weights over K rule heads, and the composed reward φ = Σ_k w_k ψ_k. Pure numpy/scipy, no I/O.

Every function returns weights of shape (K,) or, for seeded random baselines, (S, K) with one row per seed.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize


def encore_weights(entropy: np.ndarray, tau: float) -> np.ndarray:
    """ENCORE: w_k = softmax(-H_k / τ) = exp(-H_k/τ) / Σ_j exp(-H_j/τ).

    τ → ∞ gives uniform weights, τ → 0 all weight on the lowest-entropy rule(s); adding a constant to every H_k
    changes nothing. Computed with the minimum entropy subtracted, so tiny τ does not overflow.
    """
    check_tau(tau)
    H = np.asarray(entropy, dtype=float)
    if np.any(~np.isfinite(H)):
        raise ValueError(f"entropy has non-finite values {H.tolist()}: a rule with no ratings cannot be weighted")
    z = np.exp(-(H - H.min()) / tau)
    return z / z.sum()


def check_tau(tau: float) -> None:
    if not (isinstance(tau, (int, float)) and np.isfinite(tau) and tau > 0):
        raise ValueError(f"method.tau={tau}: the temperature must be a positive finite number (paper default 2)")


def uniform_weights(k: int) -> np.ndarray:
    """w_k = 1/K."""
    return np.full(k, 1.0 / k)


def dirichlet_weights(k: int, n_seeds: int, seed: int, alpha: float = 1.0) -> np.ndarray:
    """Random baseline: S = n_seeds weight vectors w ~ Dirichlet(α·1_K), seeded; α = 1 is uniform on the simplex."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(k, float(alpha)), size=n_seeds)


def one_hot(k: int, index: int) -> np.ndarray:
    w = np.zeros(k)
    w[index] = 1.0
    return w


def best_single_rule_weights(accuracy: np.ndarray) -> np.ndarray:
    """Single-rule baseline: one-hot on the rule with the highest accuracy on the training pairs (first on ties)."""
    return one_hot(len(accuracy), int(np.nanargmax(accuracy)))


def random_single_rule_weights(k: int, n_seeds: int, seed: int) -> np.ndarray:
    """Random one-hot baseline: one uniformly drawn rule per seed, (S, K)."""
    idx = np.random.default_rng(seed).integers(0, k, size=n_seeds)
    return np.eye(k)[idx]


def topk_weights(entropy: np.ndarray, k: int) -> np.ndarray:
    """Ablation: uniform weights on the k lowest-entropy rules (stable order on ties), zero elsewhere."""
    H = np.asarray(entropy, dtype=float)
    if not 1 <= k <= H.size:
        raise ValueError(f"method.k={k}: choose 1 <= k <= K={H.size}")
    w = np.zeros(H.size)
    w[np.argsort(H, kind="stable")[:k]] = 1.0 / k
    return w


def bt_loss(w: np.ndarray, delta: np.ndarray, l2: float = 0.0) -> float:
    """Bradley–Terry loss of linear weights: mean_i -log σ(Σ_k w_k Δψ_ik) + (l2/2)‖w‖², Δψ = ψ(chosen) - ψ(rejected)."""
    return float(np.mean(np.logaddexp(0.0, -(delta @ w))) + 0.5 * l2 * w @ w)


def bt_grad(w: np.ndarray, delta: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """∂/∂w of :func:`bt_loss`: -mean_i σ(-Δ_i·w) Δ_i + l2·w. At w = 0 this is -½ mean_i Δ_i: a rule whose Δ has
    mean zero (ratings that carry no preference signal) gets no gradient. The paper's claim that high-entropy rules
    get negligible BT weight follows where high entropy is rater noise: tests/test_theorem.py states that model,
    its gradient -½ (1 - λ)(2ρ - 1) and optimum (a single rule's weight peaks at 1.72 nats before it falls), and the
    claim's limits: a graded maximum-entropy rule that carries signal takes weight, and squeezing ratings by s
    scales the optimal weight by 1/s (docs/experiments.md)."""
    s = 0.5 * (1.0 - np.tanh(0.5 * (delta @ w)))  # σ(-x), overflow-free
    return -(delta * s[:, None]).mean(axis=0) + l2 * w


def bt_fit_weights(delta: np.ndarray, l2: float = 1e-3, normalise: bool = True) -> np.ndarray:
    """Bradley–Terry-optimised linear weights: argmin_w :func:`bt_loss` (convex; L-BFGS from w = 0).

    Pairs with a missing rating on any rule are dropped. With ``normalise`` the result is scaled to Σ|w_k| = 1, which
    leaves every pairwise comparison unchanged and makes weights comparable across methods.
    """
    d = np.asarray(delta, dtype=float)
    d = d[~np.isnan(d).any(axis=1)]
    if d.shape[0] == 0:
        raise ValueError("bt_fit_weights: no pair has all ratings present")
    res = optimize.minimize(bt_loss, np.zeros(d.shape[1]), args=(d, l2), jac=bt_grad, method="L-BFGS-B",
                            options={"maxiter": 1000, "gtol": 1e-10})
    w = res.x
    if normalise and np.abs(w).sum() > 0:
        w = w / np.abs(w).sum()
    return w


def compose(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """φ = Σ_k w_k ψ_k. scores: (..., K); weights (K,) → (...); weights (S, K) → (S, ...)."""
    s, w = np.asarray(scores, float), np.asarray(weights, float)
    if w.ndim == 1:
        return s @ w
    return np.moveaxis(s @ w.T, -1, 0)
