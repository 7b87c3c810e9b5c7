"""Composition methods as config-built objects (``conf/method/*.yaml``, ``_target_``).

A method turns what the study learned on the training pairs (a :class:`FitContext`) into composition weights:
(K,) for a deterministic method, (S, K) for a seeded random one (one row per seed, reported as mean ± std).
A method that scores pairs itself (single-head BT, gating, LLM judge) has ``rewards(ctx) -> ((1, M, 2), report)``
instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from encore import compose


@dataclass
class FitContext:
    rules: list[str]
    entropy: np.ndarray  # (K,) rating entropy of each rule on the training pairs, in units of log base ``log_base``
    accuracy: np.ndarray  # (K,) rule accuracy on the training pairs
    delta: np.ndarray  # (N, K) ψ(chosen) - ψ(rejected) of the rater on the training pairs
    train_ratings: np.ndarray | None = None  # (N, 2, K) the rater's ratings of the training pairs (chosen first)
    train_pairs: pd.DataFrame | None = None
    eval_pairs: pd.DataFrame | None = None
    train_scores: np.ndarray | None = None  # (N, 2, K) head scores of the multi-head RM on the training pairs
    held_out_scores: np.ndarray | None = None  # (N, 2, K) the same from heads that never saw the pair (NaN: none)
    held_out_basis: str = "held-out head scores"  # what held_out_scores are (the trainer's words)
    eval_scores: np.ndarray | None = None  # (M, 2, K)
    encoder: Any = None  # the backbone (cfg.model)
    trainer: Any = None  # the reward-model trainer (cfg.train): also fits the single-head BT model
    rater: Any = None  # the run's rater (an LLM judge reuses its loaded model)
    cache_dir: str | None = None
    rm_report: dict | None = None  # the trainer's report for this run's reward model (e.g. its model_dir)
    log_base: float = float(np.e)  # study.log_base: the unit of ``entropy`` (e: nats, 2: bits)

    def entropy_nats(self) -> np.ndarray:
        """H_k in nats, whatever unit the study reports it in: H_nats = H_base · ln(base)."""
        return np.asarray(self.entropy, float) * np.log(self.log_base)


@dataclass
class Encore:
    """w = softmax(-H / τ) with H in nats, whatever ``study.log_base`` the run reports entropy in, so τ means the
    same in every run. Default τ = 2, the paper's value; the paper states no unit, ours is nats (τ = 2 nats = 2.885
    bits; were the paper's 2 meant in bits, it would be τ = 1.386 nats here)."""

    tau: float = 2.0
    name: str = "encore"

    def __post_init__(self) -> None:
        compose.check_tau(self.tau)  # fail at config time, before any stage runs

    def weights(self, ctx: FitContext) -> np.ndarray:
        return compose.encore_weights(ctx.entropy_nats(), self.tau)


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
        if not self.alpha > 0:
            raise ValueError(f"method.alpha={self.alpha}: the Dirichlet concentration must be > 0 (1: uniform)")

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


INPUTS = ("heads", "ratings")
FIT_ON = ("held_out", "in_sample")


@dataclass
class Learned:
    """What a learned composition is fitted on: (P,) rows of the training pairs, their (P, 2, K) inputs, and the
    basis in words (``fitted_on`` in main_table.csv, metrics.json and the summary)."""

    rows: np.ndarray
    x: np.ndarray
    basis: str


def check_learned(inputs: str, fit_on: str) -> None:
    if inputs not in INPUTS:
        raise ValueError(f"method.inputs={inputs!r}; use heads (the reward model's head scores) or ratings (the "
                         "rater's ratings)")
    if fit_on not in FIT_ON:
        raise ValueError(f"method.fit_on={fit_on!r}; use held_out (head scores of training pairs the heads never "
                         "saw: the default) or in_sample (the heads' scores of their own training pairs)")


def learned_inputs(ctx: FitContext, inputs: str, fit_on: str = "held_out") -> Learned:
    """What a learned composition (BT-optimised weights, the gate) is fitted on. ``inputs=ratings``: the rater's
    ratings of every training pair (data, not a fitted model's output). ``inputs=heads``: the reward model's K head
    scores, by default (``fit_on=held_out``) only out of sample, as a stacker must be fitted (ArmoRM's gate is trained
    on preference data apart from its heads' regression data): the probe's K-fold cross-fitted scores, or the
    fine-tune's held-out split (``train.val_frac``); ``fit_on=in_sample``, on request only, the heads' scores of the
    very pairs they were trained on, which flatters the stacker. Both baselines are applied to the heads' scores on
    the evaluation pairs, as ENCORE's weights are."""
    check_learned(inputs, fit_on)
    if inputs == "ratings":
        if ctx.train_ratings is None:
            raise ValueError("method.inputs=ratings: this run has no ratings of the training pairs")
        n = len(ctx.train_ratings)
        return Learned(np.arange(n), ctx.train_ratings, f"the rater's ratings of all {n} training pairs")
    if fit_on == "in_sample":
        if ctx.train_scores is None:
            raise ValueError("method.inputs=heads: this run has no head scores of the training pairs")
        n = len(ctx.train_scores)
        return Learned(np.arange(n), ctx.train_scores, f"in-sample head scores of all {n} training pairs "
                       "(method.fit_on=in_sample: the heads were trained on these pairs)")
    h = ctx.held_out_scores
    rows = np.flatnonzero(np.isfinite(h).any(axis=(1, 2))) if h is not None else np.zeros(0, dtype=int)
    if rows.size < 2:
        raise ValueError(f"method.fit_on=held_out: this run has {rows.size} training pair(s) with held-out head "
                         f"scores ({ctx.held_out_basis}); hold more out (train.val_frac under train=finetune, "
                         "train.cross_fit under train=probe) or fit in sample on request with method.fit_on=in_sample")
    return Learned(rows, h[rows], ctx.held_out_basis)


@dataclass
class BTOptimized:
    """Linear weights w = argmin_w mean_i -log σ(Σ_k w_k Δ_ik) (+ L2), fitted on the training pairs and applied to the
    heads on the evaluation pairs. ``inputs``: what Δ is, ``heads`` (default: the reward model's head scores, the
    multi-head rewards that the paper's weights compose; the gate's inputs too) or ``ratings`` (the rater's Δψ);
    ``fit_on``: held-out head scores (default) or ``in_sample`` (:func:`learned_inputs`)."""

    l2: float = 1e-3
    inputs: str = "heads"
    fit_on: str = "held_out"
    name: str = "bt_optimized"

    def __post_init__(self) -> None:
        check_learned(self.inputs, self.fit_on)

    def fitted_on(self, ctx: FitContext) -> str:
        return learned_inputs(ctx, self.inputs, self.fit_on).basis

    def weights(self, ctx: FitContext) -> np.ndarray:
        x = learned_inputs(ctx, self.inputs, self.fit_on).x
        return compose.bt_fit_weights(x[:, 0] - x[:, 1], l2=self.l2)


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


@dataclass
class BTSingleHead:
    """One head on the same backbone trained on the preferences with -log σ(r_chosen - r_rejected): a linear head on
    the frozen embeddings under ``train=probe``, the fine-tuned backbone under ``train=finetune``."""

    name: str = "bt_single_head"

    def rewards(self, ctx: FitContext) -> tuple[np.ndarray, dict[str, Any]]:
        r = ctx.trainer.preference_rewards(ctx.train_pairs, ctx.eval_pairs, ctx.encoder, ctx.cache_dir)
        return r[None], {}


@dataclass
class Gating:
    """ArmoRM-style gating: an MLP on the prompt's representation by the reward model's own backbone (fine-tuned
    under ``train=finetune``; templated as the heads' input) → softmax over the K frozen heads, trained with the BT
    loss on the training pairs and applied to the heads' scores on the evaluation pairs. ``inputs`` as
    :class:`BTOptimized`'s: ``heads`` (default; ArmoRM's gate reads its frozen heads) or ``ratings``, and ``fit_on``
    (held-out head scores by default, the prompts of those pairs with them). Reports the gate entropy (mean over
    evaluation prompts; log K is uniform)."""

    hidden: int = 64
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-2
    dropout: float = 0.1
    seed: int = 0
    inputs: str = "heads"
    fit_on: str = "held_out"
    name: str = "gating"

    def __post_init__(self) -> None:
        check_learned(self.inputs, self.fit_on)

    def fitted_on(self, ctx: FitContext) -> str:
        return learned_inputs(ctx, self.inputs, self.fit_on).basis

    def rewards(self, ctx: FitContext) -> tuple[np.ndarray, dict[str, Any]]:
        from encore.gating import fit_gating, gate_entropy

        def prompts(pairs: pd.DataFrame) -> np.ndarray:  # as the reward model reads them, through its backbone
            return ctx.trainer.prompt_embeddings(pairs, ctx.encoder, ctx.cache_dir, ctx.rm_report)

        fit_set = learned_inputs(ctx, self.inputs, self.fit_on)  # the pairs the gate is trained on, and their inputs
        fit = fit_gating(prompts(ctx.train_pairs.iloc[fit_set.rows]), fit_set.x, self.hidden, self.epochs, self.lr,
                         self.weight_decay, self.dropout, seed=self.seed)
        eval_prompts = prompts(ctx.eval_pairs)
        g = fit.weights(eval_prompts)  # (M, K)
        h = gate_entropy(g)
        report = {"gate_entropy_mean": float(h.mean()), "gate_entropy_min": float(h.min()),
                  "gate_entropy_uniform": float(np.log(g.shape[1])), "gate_final_loss": fit.losses[-1],
                  "mean_weights": g.mean(0)}
        return fit.rewards(eval_prompts, ctx.eval_scores)[None], report
