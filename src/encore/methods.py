"""Composition methods as config-built objects (``conf/method/*.yaml``, ``_target_``).

A method turns what the study learned on the training pairs (a :class:`FitContext`) into composition weights:
(K,) for a deterministic method, (S, K) for a seeded random one (one row per seed, reported as mean ± std).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encore import compose


@dataclass
class FitContext:
    rules: list[str]
    entropy: np.ndarray  # (K,) rating entropy of each rule on the training pairs
    accuracy: np.ndarray  # (K,) rule accuracy on the training pairs
    delta: np.ndarray  # (N, K) ψ(chosen) - ψ(rejected) of the rater on the training pairs


@dataclass
class Encore:
    """w = softmax(-H / τ); paper default τ = 2."""

    tau: float = 2.0
    name: str = "encore"

    def __post_init__(self) -> None:
        compose.check_tau(self.tau)  # fail at config time, before any stage runs

    def weights(self, ctx: FitContext) -> np.ndarray:
        return compose.encore_weights(ctx.entropy, self.tau)


@dataclass
class Uniform:
    name: str = "uniform"

    def weights(self, ctx: FitContext) -> np.ndarray:
        return compose.uniform_weights(len(ctx.rules))


@dataclass
class RandomDirichlet:
    n_seeds: int = 10
    seed: int = 0
    alpha: float = 1.0
    name: str = "random"

    def __post_init__(self) -> None:
        if self.n_seeds < 1:
            raise ValueError(f"method.n_seeds={self.n_seeds}: need at least 1 (the paper reports >= 10)")

    def weights(self, ctx: FitContext) -> np.ndarray:
        return compose.dirichlet_weights(len(ctx.rules), self.n_seeds, self.seed, self.alpha)


@dataclass
class SingleRule:
    """``choice=best``: the most accurate rule on the training pairs; ``choice=random``: a random one-hot per seed."""

    choice: str = "best"
    n_seeds: int = 10
    seed: int = 0
    name: str = "single_rule"

    def __post_init__(self) -> None:
        if self.choice not in ("best", "random"):
            raise ValueError(f"method.choice={self.choice!r}; use 'best' or 'random'")

    def weights(self, ctx: FitContext) -> np.ndarray:
        if self.choice == "best":
            return compose.best_single_rule_weights(ctx.accuracy)
        return compose.random_single_rule_weights(len(ctx.rules), self.n_seeds, self.seed)


@dataclass
class BTOptimized:
    """Linear weights fitted with the Bradley–Terry loss on the rater's Δψ of the training pairs."""

    l2: float = 1e-3
    name: str = "bt_optimized"

    def weights(self, ctx: FitContext) -> np.ndarray:
        return compose.bt_fit_weights(ctx.delta, l2=self.l2)


@dataclass
class TopK:
    """Ablation: uniform over the k lowest-entropy rules."""

    k: int = 1
    name: str = "topk"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"method.k={self.k}: keep at least one rule")

    def weights(self, ctx: FitContext) -> np.ndarray:
        return compose.topk_weights(ctx.entropy, self.k)
