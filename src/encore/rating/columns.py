"""``rater=columns``: ratings read from the labels a dataset ships with (:mod:`encore.data.labels`), no model.

Every rule names a label column and its declared scale ``[low, high]``; the rating is

    ψ = (x − low) / (high − low),     or 1 − that with ``invert: true`` (a harm flag: ψ = 1 − harm)

Scales are declared, never guessed: a value outside its scale, or one that is not a number, stops the run naming
the column, the source row and the fix. An empty cell (None, NaN, "", "N/A") is a missing rating with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from encore.errors import DataError, shown
from encore.data.labels import ROW, SIDES, WHERE, column, names
from encore.rating.engine import Ratings
from encore.rules import Rule

_EMPTY = {"", "n/a", "na", "nan", "none", "null"}


@dataclass(frozen=True)
class Scale:
    column: str
    low: float
    high: float
    invert: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "scale": [self.low, self.high], "invert": self.invert}


def _scale(rule: str, spec: Mapping[str, Any]) -> Scale:
    field = f"rater.rules.{rule}"
    unknown = set(spec) - {"column", "scale", "invert"}
    if unknown or "column" not in spec or "scale" not in spec:
        raise DataError(f"{field}: give column, scale: [low, high] and optionally invert; got {dict(spec)}")
    try:
        low, high = (float(x) for x in spec["scale"])
    except (TypeError, ValueError):
        raise DataError(f"{field}.scale={spec['scale']!r}: declare the label's scale as [low, high], e.g. [0, 4]") from None
    if not high > low:
        raise DataError(f"{field}.scale={[low, high]}: high must exceed low")
    return Scale(str(spec["column"]), low, high, bool(spec.get("invert", False)))


def _numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw label values -> (floats with NaN for empty cells, mask of cells that are neither a number nor empty)."""
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), bool)
    for i, v in enumerate(values):
        if v is None or isinstance(v, float) and np.isnan(v):
            continue
        if isinstance(v, str):
            if v.strip().lower() in _EMPTY:
                continue
            try:
                out[i] = float(v)
            except ValueError:
                bad[i] = True
            continue
        try:
            out[i] = float(v)  # bool, int, float, numpy scalars
        except (TypeError, ValueError):
            bad[i] = True
    return out, bad


class ColumnRater:
    """Ratings from label columns. ``rules`` maps a rule name to ``{column, scale: [low, high], invert}``; it is a
    catalogue: the run's rule set (``rules=...``) picks which of them it uses, and a rule the catalogue lacks is an
    error."""

    def __init__(self, name: str, rules: Mapping[str, Mapping[str, Any]]):
        if not rules:
            raise DataError("rater.rules is empty: map each rule to a label column and its scale")
        self.name = str(name)
        self.scales = {str(r): _scale(str(r), spec) for r, spec in rules.items()}

    def given(self, pairs: pd.DataFrame, rules: list[Rule]) -> tuple[Ratings, dict[str, Any]]:
        """The (N, 2, K) ratings of ``pairs`` under ``rules`` from their label columns."""
        unknown = [r.name for r in rules if r.name not in self.scales]
        if unknown:
            raise DataError(f"rules {unknown} have no label column in rater.rules (it maps {sorted(self.scales)}). "
                            "Fix: pick the matching rule set (rules=...) or add the rule to rater.rules")
        have = names(pairs)
        lacking = sorted({self.scales[r.name].column for r in rules} - set(have))
        if lacking:
            raise DataError(f"the data carries no label column {lacking} (its labels: {have or 'none'}). Fix: use the "
                            f"data option that matches rater={self.name} (its config names it), or the release with "
                            "these labels")
        n, k = len(pairs), len(rules)
        values, reasons = np.full((n, 2, k), np.nan), np.full((n, 2, k), "", dtype=object)
        for j, rule in enumerate(rules):
            s = self.scales[rule.name]
            for side_i, side in enumerate(SIDES):
                raw = pairs[column(side, s.column)].to_numpy(object)
                x, bad = _numbers(raw)
                out = ~np.isnan(x) & ((x < s.low) | (x > s.high))
                if bad.any() or out.any():
                    i = int(np.flatnonzero(bad | out)[0])
                    what = "is not a number" if bad[i] else f"is outside the declared scale [{s.low:g}, {s.high:g}]"
                    raise DataError(
                        f"row {self._row(pairs, i)}: column {self._where(pairs, side, i)}{s.column} = {shown(raw[i])} "
                        f"{what} (rule {rule.name}, {side} side; {int((bad | out).sum())} such value(s)). Fix: correct "
                        f"the data, or declare the label's real scale in rater.rules.{rule.name}.scale")
                psi = (x - s.low) / (s.high - s.low)
                values[:, side_i, j] = 1.0 - psi if s.invert else psi
                reasons[np.isnan(x), side_i, j] = f"no label in {s.column}"
        ratings = Ratings(list(pairs["pair_id"]), [r.name for r in rules], values, reasons)
        return ratings, {"source": f"columns:{self.name}", "scales": {r.name: self.scales[r.name].as_dict() for r in rules}}

    @staticmethod
    def _row(pairs: pd.DataFrame, i: int) -> str:
        return str(int(pairs[ROW].iloc[i])) if ROW in pairs.columns else f"{i} (pair {pairs['pair_id'].iloc[i]})"

    @staticmethod
    def _where(pairs: pd.DataFrame, side: str, i: int) -> str:
        col = column(side, WHERE)
        return str(pairs[col].iloc[i]) if col in pairs.columns else f"{side}:"
