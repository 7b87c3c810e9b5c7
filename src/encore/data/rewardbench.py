"""RewardBench (allenai/reward-bench), the paper's evaluation: its subsets, the example counts its Safety score is
weighted by, and the loader. The one home of these constants."""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from encore.data.pairs import normalise, select_subsets
from encore.data.sources import hub_table, read_table
from encore.errors import DataError

# RewardBench's `filtered` split, all 23 subsets, and the example counts it weights the Safety section by.
REWARDBENCH_SUBSETS = (
    "alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med", "mt-bench-hard",
    "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual",
    "refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer",
    "math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust",
)
SAFETY_COUNTS = {
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
}


def headline_name(subsets: Iterable[str]) -> str:
    """What an evaluation's headline number is (:func:`encore.evaluate.headline`): RewardBench's ``Safety`` score
    when the pairs have one of its Safety subsets, else plain ``accuracy``."""
    return "Safety" if any(s in SAFETY_COUNTS for s in subsets) else "accuracy"


def check_rewardbench_subsets(subsets: Iterable[str]) -> None:
    unknown = [s for s in subsets if s not in REWARDBENCH_SUBSETS]
    if unknown:
        raise DataError(
            f"eval.subsets names {unknown}, which RewardBench does not have. "
            f"Fix: use names from RewardBench's filtered split, e.g. the Safety section {list(SAFETY_COUNTS)}."
        )


def load_reward_bench(
    hub_id: str = "allenai/reward-bench",
    split: str = "filtered",
    path: str | None = None,
    revision: str | None = None,
    subsets: list[str] | None = None,
    limit_per_subset: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """RewardBench (``filtered`` split), restricted to ``subsets`` (default: the five Safety subsets). ``source``:
    the set's name (:mod:`encore.data.names`), also in messages beside the file or hub id."""
    subsets = list(subsets) if subsets else list(SAFETY_COUNTS)
    check_rewardbench_subsets(subsets)
    raw = read_table(path, "eval.path", hub_id, text=("prompt", "chosen", "rejected", "subset")) if path else hub_table(hub_id, split, None, None, revision)
    where = str(path) if path else f"{hub_id}[{split}]"
    source = f"{source} ({where})" if source else where
    pairs = select_subsets(normalise(raw, source=source), subsets, source=source, field="eval.subsets")
    if limit_per_subset is not None:
        pairs = pairs.groupby("subset", sort=False).head(int(limit_per_subset)).reset_index(drop=True)
    return pairs
