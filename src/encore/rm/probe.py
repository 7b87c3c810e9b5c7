"""Multi-head reward model, fast path (``train=probe``): a frozen backbone, cached embeddings, and K ridge heads
that predict the K rule ratings. Every head reads the same pooled embedding, so one backbone pass scores all K.
The single-head Bradley–Terry baseline on this path is a linear head on the same frozen embeddings fitted with
-log σ(v·(e_chosen - e_rejected)).

Ridge per head k: W_k = argmin ‖X W_k + b_k - y_k‖² + α_k ‖W_k‖², with α_k chosen from a grid on a validation split
of the training pairs (split by pair, so the two sides of a pair never straddle it), then refitted on all pairs.

Held-out head scores of the training pairs (what a fitted composition, BT-optimised weights or the gate, is fitted
on by default: :mod:`encore.methods`) come from K-fold cross-fitting, ``cross_fit`` = K folds of whole prompts: the
heads are fitted (α chosen as above) on K-1 folds and score the held-out fold, so no pair's score comes from heads
that saw its ratings. ``cross_fit=0`` leaves them out (only ``method.fit_on=in_sample`` then works).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from encore.cache.artifacts import array_hash, cached_arrays, content_hash, expect
from encore.rm.backbone import Encoder
from encore.compose import bt_fit_weights
from encore.data.pairs import fingerprint

log = logging.getLogger(__name__)


def embed_pairs(pairs: pd.DataFrame, encoder: Encoder, cache_dir: str | Path, progress: bool = True) -> tuple[np.ndarray, bool]:
    """(N, 2, D) embeddings of (prompt, chosen) and (prompt, rejected), cached by backbone identity + data fingerprint.

    Returns the embeddings and whether the cache was hit (a τ sweep must hit it every time).
    """
    # Cache-key audit (embeddings): the producer reads the pairs' prompt, chosen, rejected (all in pair_id) and
    # subset (fingerprint), and the encoder's identity (model, revision, tokenizer, config+seed, pooling, normalize,
    # max_length, truncation, text_format, an explicit dtype). Not: batch_size, device, placement (same numbers).
    key = content_hash(encoder.identity(), fingerprint(pairs))
    path = Path(cache_dir) / "embeddings" / f"{key}.npz"

    def compute() -> dict[str, np.ndarray]:
        e = encoder.encode(encoder.pair_texts(pairs), progress=progress)
        return {"emb": e.reshape(len(pairs), 2, -1)}

    def check(a: dict[str, np.ndarray]) -> str | None:
        bad = expect(a, emb=(len(pairs), 2, None))
        if bad is None and np.all(a["emb"] == 0, axis=-1).any():
            bad = "all-zero embedding vectors (no encoder pools to exactly zero)"
        return bad

    arrays, hit = cached_arrays(path, compute, check)
    return arrays["emb"], hit


def embed_prompts(pairs: pd.DataFrame, encoder: Encoder, cache_dir: str | Path) -> np.ndarray:
    """(N, D) embeddings of the conversations alone (what a gating network reads) as they open the reward model's
    input (:meth:`Encoder.prompt_texts`: template, special tokens), cached like :func:`embed_pairs`."""
    key = content_hash(encoder.identity(), fingerprint(pairs), "prompts-as-rm-input")

    def compute() -> dict[str, np.ndarray]:
        return {"emb": encoder.encode(encoder.prompt_texts(list(pairs["prompt"])), progress=True)}

    return cached_arrays(Path(cache_dir) / "embeddings" / f"{key}.npz", compute,
                         lambda a: expect(a, emb=(len(pairs), None)))[0]["emb"]


def _ridge_solve(X: np.ndarray, Y: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Centred ridge for every alpha at once through one SVD: returns W (A, D, K)."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    UtY = U.T @ Y  # (r, K)
    return np.stack([Vt.T @ ((s / (s ** 2 + a))[:, None] * UtY) for a in alphas])


@dataclass
class RidgeHeads:
    """K linear heads on a D-dim embedding. ``alphas`` is the grid searched per head."""

    alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
    val_frac: float = 0.2
    seed: int = 0
    bt_l2: float = 1e-3  # L2 of the single-head Bradley–Terry baseline (method=bt_single_head)
    cross_fit: int = 5  # folds for the held-out head scores of the training pairs (0: none)
    W: np.ndarray | None = field(default=None, repr=False)  # (D, K)
    b: np.ndarray | None = field(default=None, repr=False)  # (K,)
    alpha: np.ndarray | None = field(default=None, repr=False)  # (K,) chosen α per head
    val_mse: np.ndarray | None = field(default=None, repr=False)  # (K,) validation MSE at the chosen α

    def __post_init__(self) -> None:
        self.alphas = tuple(float(a) for a in self.alphas)  # configs hand in a ListConfig
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"train.alphas={list(self.alphas)}: give at least one positive ridge penalty")
        if not (self.cross_fit == 0 or self.cross_fit >= 2):
            raise ValueError(f"train.cross_fit={self.cross_fit}: use 0 (no held-out head scores) or K >= 2 folds "
                             "(default 5)")

    def identity(self) -> dict[str, Any]:
        return {"kind": "ridge", "alphas": list(self.alphas), "val_frac": self.val_frac, "seed": self.seed,
                "val_split": "by_prompt", "cross_fit": self.cross_fit}

    def held_out_basis(self, n_pairs: int) -> str:
        """What the held-out head scores of the training pairs are, for metrics.json and the summary."""
        if not self.cross_fit:
            return "none (train.cross_fit=0)"
        return f"{self.cross_fit}-fold cross-fitted probe heads (by prompt) on the {n_pairs} training pairs"

    # ------------------------------------------------------------------ what the pipeline calls
    def fit_score(self, train: pd.DataFrame, ratings: np.ndarray, eval_pairs: pd.DataFrame, encoder: Encoder,
                  cache_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Embed (cached), fit the K heads on ratings (N, 2, K), score train and eval pairs (cached)."""
        cache = Path(cache_dir)
        train_emb, hit_train = embed_pairs(train, encoder, cache)
        eval_emb, hit_eval = embed_pairs(eval_pairs, encoder, cache)
        rh = array_hash(ratings)
        # Cache-key audit (ridge head scores): the fit reads the train embeddings (encoder + train fingerprint), the
        # ratings' values (array_hash: order and rule order included), the train prompts as groups (in the train
        # fingerprint), the eval embeddings (eval fingerprint) and alphas, val_frac, seed, cross_fit (the folds of the
        # held-out scores). bt_l2 is not read here.
        key = content_hash(encoder.identity(), fingerprint(train), fingerprint(eval_pairs), rh, self.identity())
        arrays, hit = head_scores(train_emb, ratings, eval_emb, self, cache / "head_scores" / f"{key}.npz",
                                  groups=list(train["prompt"]))
        return arrays, {"embeddings_cached": bool(hit_train and hit_eval), "head_scores_cached": hit,
                        "head_scores_key": key, "held_out_basis": self.held_out_basis(len(train))}

    def preference_rewards(self, train: pd.DataFrame, eval_pairs: pd.DataFrame, encoder: Encoder,
                           cache_dir: str | Path) -> np.ndarray:
        """(M, 2) rewards of a linear Bradley–Terry head on the frozen embeddings (bias cancels in a comparison)."""
        train_emb, _ = embed_pairs(train, encoder, cache_dir)
        eval_emb, _ = embed_pairs(eval_pairs, encoder, cache_dir)
        v = bt_fit_weights(train_emb[:, 0] - train_emb[:, 1], l2=self.bt_l2, normalise=False)
        return eval_emb @ v

    def prompt_embeddings(self, pairs: pd.DataFrame, encoder: Encoder, cache_dir: str | Path,
                          report: dict[str, Any] | None = None) -> np.ndarray:
        """(N, D) prompt representations for a gate: the frozen backbone is the reward model's own here."""
        return embed_prompts(pairs, encoder, cache_dir)

    def load_rm(self, arrays: dict[str, np.ndarray], report: dict[str, Any], encoder: Encoder) -> Any:
        """The fitted probe as a torch :class:`~encore.rm.model.MultiHeadRM` (frozen backbone + linear heads)."""
        from encore.rm.model import from_linear_heads

        if encoder.normalize:
            raise ValueError("model.normalize=true: unit-normalised embeddings have no torch-module equivalent in "
                             "MultiHeadRM; export a probe trained with model.normalize=false")
        return from_linear_heads(encoder.model, arrays["W"], arrays["b"], encoder.resolved_pooling())

    def fit(self, emb: np.ndarray, ratings: np.ndarray, groups: Sequence[Any] | None = None) -> "RidgeHeads":
        """emb (N, 2, D), ratings (N, 2, K) with NaN for missing (masked per head). α is chosen on a validation split
        of whole ``groups`` (the pairs' prompts; default: each pair its own group), then the heads are refitted."""
        from encore.rm.splits import validation_split

        n, _, d = emb.shape
        k = ratings.shape[-1]
        if not 0 < self.val_frac < 1:
            raise ValueError(f"train.val_frac={self.val_frac}: must be in (0, 1)")
        val_pairs, tr_pairs = validation_split(range(n) if groups is None else groups, self.val_frac, self.seed,
                                               at_least_one=True)
        X, Y = emb.reshape(-1, d), ratings.reshape(-1, k)
        rows = lambda p: np.concatenate([2 * p, 2 * p + 1])  # noqa: E731  pair index -> both response rows
        tr, va = rows(tr_pairs), rows(val_pairs)
        self.W, self.b = np.zeros((d, k)), np.zeros(k)
        self.alpha, self.val_mse = np.zeros(k), np.zeros(k)
        full_mask = ~np.isnan(Y)
        groups: dict[bytes, list[int]] = {}  # heads with the same missing pattern share one SVD
        for j in range(k):
            groups.setdefault(full_mask[:, j].tobytes(), []).append(j)
        for _, heads in groups.items():
            m = full_mask[:, heads[0]]
            t, v = tr[m[tr]], va[m[va]]
            if len(t) < 2 or len(v) < 1:
                raise ValueError(f"heads {heads}: too few rated responses to fit and validate ({len(t)}, {len(v)})")
            xm, ym = X[t].mean(0), Y[np.ix_(t, heads)].mean(0)
            Ws = _ridge_solve(X[t] - xm, Y[np.ix_(t, heads)] - ym, self.alphas)  # (A, D, H)
            pred = np.einsum("vd,adh->avh", X[v] - xm, Ws) + ym
            mse = ((pred - Y[np.ix_(v, heads)][None]) ** 2).mean(1)  # (A, H)
            best = mse.argmin(0)
            allr = np.flatnonzero(m)
            xm, ym = X[allr].mean(0), Y[np.ix_(allr, heads)].mean(0)
            Wfull = _ridge_solve(X[allr] - xm, Y[np.ix_(allr, heads)] - ym, self.alphas)  # refit on all pairs
            for h, j in enumerate(heads):
                self.W[:, j] = Wfull[best[h], :, h]
                self.b[j] = ym[h] - xm @ self.W[:, j]
                self.alpha[j], self.val_mse[j] = self.alphas[best[h]], mse[best[h], h]
        return self

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """(..., D) -> (..., K): all K head scores from one embedding."""
        if self.W is None:
            raise RuntimeError("RidgeHeads.predict called before fit")
        return emb @ self.W + self.b


def head_scores(train_emb: np.ndarray, train_ratings: np.ndarray, eval_emb: np.ndarray, heads: RidgeHeads,
                cache_path: Path, groups: Sequence[Any] | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """Fit the heads and score the evaluation pairs, cached at ``cache_path`` (keyed by the caller)."""

    def compute() -> dict[str, np.ndarray]:
        held_out = cross_fitted_scores(train_emb, train_ratings, heads, groups)
        heads.fit(train_emb, train_ratings, groups)
        return {"eval_scores": heads.predict(eval_emb), "train_scores": heads.predict(train_emb),
                "held_out_scores": held_out, "alpha": heads.alpha, "val_mse": heads.val_mse, "W": heads.W, "b": heads.b}

    n, m, k = len(train_emb), len(eval_emb), train_ratings.shape[-1]

    def check(a: dict[str, np.ndarray]) -> str | None:
        return (expect(a, eval_scores=(m, 2, k), train_scores=(n, 2, k), W=(None, k), b=(k,))
                or expect(a, finite=False, alpha=(k,), val_mse=(k,), held_out_scores=(n, 2, k)))

    return cached_arrays(cache_path, compute, check)


def cross_fitted_scores(emb: np.ndarray, ratings: np.ndarray, heads: RidgeHeads,
                        groups: Sequence[Any] | None = None) -> np.ndarray:
    """(N, 2, K) head scores of the training pairs, each from heads fitted without its fold: ``heads.cross_fit``
    folds of whole ``groups`` (:func:`encore.rm.splits.group_folds`), a fresh :class:`RidgeHeads` with the same
    settings fitted (α chosen on its own validation split) on the other folds. All NaN with ``cross_fit=0``."""
    from encore.rm.splits import group_folds

    n = len(emb)
    out = np.full((n, 2, ratings.shape[-1]), np.nan)
    if not heads.cross_fit:
        return out
    keys = list(range(n)) if groups is None else list(groups)
    folds = group_folds(keys, heads.cross_fit, heads.seed)
    for f in np.unique(folds):
        fit, held = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        if len(fit) == 0:  # one conversation only: nothing to fit on without it
            continue
        sub = RidgeHeads(heads.alphas, heads.val_frac, heads.seed, heads.bt_l2, cross_fit=0)
        sub.fit(emb[fit], ratings[fit], [keys[i] for i in fit])
        out[held] = sub.predict(emb[held])
    return out
