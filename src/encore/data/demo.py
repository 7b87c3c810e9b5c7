"""The embedded demo set shipped inside the package (``data=demo``, ``eval=demo``): offline, no hub."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from encore.data.pairs import apply_limit, normalise, select_subsets
from encore.data.rewardbench import check_rewardbench_subsets
from encore.errors import DataError


def load_demo(split: str = "train", limit: int | None = None, subsets: list[str] | None = None,
              source: str | None = None) -> pd.DataFrame:
    """The embedded demo set shipped inside the package: ``train`` (harm-category pairs) or ``eval``
    (laid out as RewardBench's five Safety subsets). Written by hand for this project; see demo_data/README.
    ``source``: the set's name (:mod:`encore.data.names`), also in messages."""
    if split not in ("train", "eval"):
        raise DataError(f"data.split={split!r} for the demo set; use 'train' or 'eval'")
    ref = resources.files("encore.data") / "demo_data" / f"{split}.jsonl"
    with resources.as_file(ref) as p:
        raw = pd.read_json(p, lines=True, dtype=False)  # texts as written
    label = source or f"demo[{split}]"
    pairs = normalise(raw, source=label, subset_field="subset")
    if split == "eval":
        check_rewardbench_subsets(list(subsets or []) + list(pairs["subset"].unique()))
    pairs = select_subsets(pairs, subsets, source=label, field=f"{'eval' if split == 'eval' else 'data'}.subsets")
    return apply_limit(pairs, limit, label)
