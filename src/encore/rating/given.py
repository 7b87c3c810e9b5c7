"""Ratings that already exist: a dataset's own labels (``rater=columns`` and its presets) or a ratings file
(``rater=file``). Such a rater has ``given(pairs, rules) -> (Ratings, report)`` instead of ``rate`` and ``identity``:
no model loads, nothing goes to the rating cache (the source is the cache), and no rating stage runs. Everything downstream (study,
multi-head reward model, every composition method, figures, wandb) reads the ratings as it reads an LLM's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from encore.errors import DataError
from encore.rating.engine import Ratings, check_missing
from encore.rules import Rule
from encore.errors import SettingError

log = logging.getLogger(__name__)


def is_given(rater: Any) -> bool:
    return hasattr(rater, "given")


def given_ratings(rater: Any, pairs: pd.DataFrame, rules: list[Rule], max_missing_share: float, *,
                  sharded: bool = False, judges: list[str] = ()) -> tuple[Ratings, dict[str, Any]]:
    """The source's ratings of ``pairs``, checked like a rating stage's: more than ``max_missing_share`` missing (or
    all) stops the run with the reasons. The report has the counts a rating stage reports and ``n_given``, the
    ratings read from the source (what a run's summary says came from it). A sharded run, or a
    method that needs the rater to judge pairs (``judges``), is a setting error: there is no model."""
    if sharded:
        raise SettingError("rating.num_shards / rating.shard are set, but this rater reads ratings that exist: there "
                           "is nothing to rate in shards. Fix: drop rating.num_shards and rating.shard")
    if judges:
        raise SettingError(f"method {list(judges)} judges pairs with the run's LLM rater, and this rater is a ratings "
                           "source with no model. Fix: leave it out of method (method=all does), or rate with "
                           "rater=hf / rater=openai")
    ratings, extra = rater.given(pairs, rules)
    report = {"n_pairs": len(pairs), "n_rules": len(rules), "n_cached": 0, "n_new": 0,
              "n_given": ratings.values.size - ratings.n_missing,  # ratings the source held for these pairs
              "n_missing": ratings.n_missing, "missing_by_reason": ratings.missing_by_reason(), **extra}
    if ratings.n_missing:
        log.warning("%d rating(s) missing: %s", ratings.n_missing, report["missing_by_reason"])
    check_missing(ratings.n_missing, ratings.values.size, report["missing_by_reason"], max_missing_share, given=True)
    check_every_rule_rated(ratings, getattr(rater, "scales", {}))
    return ratings, report


def check_every_rule_rated(ratings: Ratings, scales: dict[str, Any] | None = None) -> None:
    """A rule with no rating on any pair (a renamed label column, a category the release lacks) stops the run
    before anything is written: its entropy, accuracy and head do not exist. Names the label column looked for."""
    empty = [r for j, r in enumerate(ratings.rules) if np.isnan(ratings.values[..., j]).all()]
    if not empty:
        return
    where = [f"{r} (column {scales[r].column!r})" if scales and r in scales else r for r in empty]
    reasons = sorted({str(x) for x in ratings.reasons[..., ratings.rules.index(empty[0])].reshape(-1)})[:2]
    raise DataError(f"rule(s) {', '.join(where)} have no rating on any of the {len(ratings.pair_ids)} pairs "
                    f"(e.g. {reasons}). "
                    "Fix: check the column name against the data's labels (a renamed category?), or leave the rule "
                    "out of the rule set (rules=...)")
