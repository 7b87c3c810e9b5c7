"""Held-out splits of training pairs that never separate what belongs together."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from encore.errors import DataError


def validation_split(groups: Any, frac: float, seed: int, at_least_one: bool = False) -> tuple[Any, Any]:
    """Indices of validation and training pairs, whole groups at a time (``groups``: one key per pair, e.g. its
    prompt), so neither the two responses of a pair nor two pairs of one conversation straddle the split. Groups are
    taken in a seeded random order until at least ``frac`` of the pairs are held out; at least one group always stays
    for training. Returns sorted index arrays."""
    codes, uniq = pd.factorize(pd.Series(list(groups)))
    n, g = len(codes), len(uniq)
    target = max(1, round(frac * n)) if at_least_one else round(frac * n)
    if target == 0 or g < 2:
        if target and g < 2:
            raise DataError(f"validation split: all {n} pairs share one prompt, so no prompt can be held out; give "
                            "pairs with different prompts or set train.val_frac=0 where allowed")
        return np.array([], dtype=int), np.arange(n)
    order = np.random.default_rng(seed).permutation(g)
    cum = np.cumsum(np.bincount(codes, minlength=g)[order])
    k = min(int(np.searchsorted(cum, target)) + 1, g - 1)
    val = np.isin(codes, order[:k])
    return np.flatnonzero(val), np.flatnonzero(~val)


def group_folds(groups: Any, k: int, seed: int) -> np.ndarray:
    """Fold (0..k'-1) of each pair for K-fold cross-fitting, whole groups at a time (as :func:`validation_split`), so
    no conversation is both fitted on and predicted. Groups are taken in a seeded random order, each into the fold
    with the fewest pairs so far; k' = min(k, number of groups). Returns (N,) ints."""
    if int(k) < 2:
        raise ValueError(f"train.cross_fit={k}: cross-fitting needs at least 2 folds")
    codes, uniq = pd.factorize(pd.Series(list(groups)))
    g = len(uniq)
    k = min(int(k), g)
    sizes = np.bincount(codes, minlength=g)
    fold_of_group, load = np.zeros(g, dtype=int), np.zeros(max(k, 1), dtype=int)
    for grp in np.random.default_rng(seed).permutation(g):
        f = int(np.argmin(load))
        fold_of_group[grp], load[f] = f, load[f] + sizes[grp]
    return fold_of_group[codes]
