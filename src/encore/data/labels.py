"""Per-response labels that ship with a dataset (human harm labels, attribute scores), carried in the pair table.

A loader that knows a dataset's labels adds, for every label ``name``, the columns ``chosen:<name>`` and
``rejected:<name>`` holding the raw value of that side's response on the dataset's own scale (a bool, a 0-4 score,
the string "4"), oriented by the pair's preference. ``chosen:@`` / ``rejected:@`` say where each side came from in
the source row (``response_1``, ``completions[2]``) and ``source_row`` is the row of the source file, so an error
about a value can name the column and the row a user opens. ``rater=columns`` (:mod:`encore.rating.columns`) turns
the labels into ratings with a declared scale.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

SIDES = ("chosen", "rejected")
ROW = "source_row"
WHERE = "@"


def column(side: str, name: str) -> str:
    return f"{side}:{name}"


def label_table(prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str], rows: Sequence[int],
                labels: dict[str, tuple[Sequence[Any], Sequence[Any]]], where: tuple[Sequence[str], Sequence[str]],
                subset: str | Sequence[str]) -> pd.DataFrame:
    """A raw pair table with label columns: ``labels`` maps a label name to its (chosen values, rejected values),
    ``where`` gives each side's place in its source row. Feed it to :func:`encore.data.pairs.normalise` with
    ``keep=carried(table)``."""
    out = pd.DataFrame({"prompt": list(prompts), "chosen": list(chosen), "rejected": list(rejected),
                        "subset": subset, ROW: np.asarray(rows, dtype=np.int64)})
    for side, w in zip(SIDES, where):
        out[column(side, WHERE)] = list(w)
    for name, values in labels.items():
        for side, v in zip(SIDES, values):
            out[column(side, name)] = list(v)
    return out


def carried(table: pd.DataFrame) -> list[str]:
    """The label columns (and their provenance) of a table, in order."""
    return [c for c in table.columns if c == ROW or c.split(":", 1)[0] in SIDES and ":" in c]


def names(pairs: pd.DataFrame) -> list[str]:
    """The labels a pair table carries (without the provenance columns)."""
    prefix = column("chosen", "")
    return [c[len(prefix):] for c in pairs.columns if c.startswith(prefix) and c != column("chosen", WHERE)]
