"""Sharded, resumable rating store.

Layout: ``<root>/<rater_key>/shard-*.parquet``, one shard per completed chunk, each written atomically. A row is one
(response, rule) rating: ``item`` (hash of prompt, response and rule text), ``rule``, ``value`` (NaN when missing) and
``reason`` (empty when the rating was obtained, else why not). A killed run loses at most the chunk in flight; the
next run reads every shard, rates only what is absent, and assembles exactly the table an uninterrupted run would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encore.artifacts import content_hash, write_frame


def item_key(prompt: str, response: str, rule_text: str) -> str:
    return content_hash(prompt, response, rule_text, length=20)


class RatingStore:
    def __init__(self, root: str | Path, rater_key: str):
        self.dir = Path(root) / rater_key
        self._table: dict[str, tuple[float, str]] | None = None

    def load(self) -> dict[str, tuple[float, str]]:
        """item -> (value, reason); later shards win (a retried rating replaces a missing one)."""
        if self._table is None:
            table: dict[str, tuple[float, str]] = {}
            for shard in sorted(self.dir.glob("shard-*.parquet")):
                df = pd.read_parquet(shard)
                table.update(zip(df["item"], zip(df["value"].astype(float), df["reason"].astype(str))))
            self._table = table
        return self._table

    def write_shard(self, items: list[str], rules: list[str], values: np.ndarray, reasons: list[str]) -> Path:
        df = pd.DataFrame({"item": items, "rule": rules, "value": np.asarray(values, float), "reason": reasons})
        name = f"shard-{time.time_ns():020d}-{os.getpid()}.parquet"  # sortable by write time
        path = write_frame(self.dir / name, df)
        table = self.load()
        table.update(zip(items, zip(df["value"], df["reason"])))
        return path

    def n_shards(self) -> int:
        return len(list(self.dir.glob("shard-*.parquet")))
