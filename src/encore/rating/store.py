"""Sharded, resumable rating store.

Layout: ``<root>/<rater_key>/shard-*.parquet``, one shard per completed chunk, each written atomically. A row is one
(response, rule) rating: ``item`` (hash of prompt, response and rule text), ``rule``, ``value`` (NaN when missing) and
``reason`` (empty when the rating was obtained, else why not). A killed run loses at most the chunk in flight; the
next run reads every shard, rates only what is absent, and assembles exactly the table an uninterrupted run would.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encore.artifacts import content_hash, write_frame

log = logging.getLogger(__name__)


TRANSIENT = "transient: "  # reason prefix of a failure that may pass (server down, overloaded): never stored


def _read_shard(path: Path) -> tuple[pd.DataFrame | None, str]:
    """A shard and "" when it is sound; else None and what is wrong with it."""
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file (truncated, not parquet) is the same problem
        return None, f"unreadable: {type(e).__name__}"
    if set(df.columns) != {"item", "rule", "value", "reason"}:
        return None, f"columns {sorted(df.columns)}"
    v = pd.to_numeric(df["value"], errors="coerce").to_numpy(float)
    missing, why = np.isnan(v), df["reason"].astype(str).to_numpy() != ""
    if ((v < 0) | (v > 1))[~missing].any():
        return None, "ratings outside [0, 1]"
    if (missing != why).any():
        return None, "a missing rating without a reason, or a reason beside a rating"
    return df, ""


def item_key(prompt: str, response: str, rule_text: str) -> str:
    return content_hash(prompt, response, rule_text, length=20)


class RatingStore:
    def __init__(self, root: str | Path, rater_key: str):
        self.dir = Path(root) / rater_key
        self._table: dict[str, tuple[float, str]] | None = None

    def load(self) -> dict[str, tuple[float, str]]:
        """item -> (value, reason); later shards win (a retried rating replaces a missing one). A shard that cannot
        be read or fails validation is moved aside (``*.invalid``, kept for inspection) and logged; its ratings are
        absent, so they are asked again."""
        if self._table is None:
            table: dict[str, tuple[float, str]] = {}
            for shard in sorted(self.dir.glob("shard-*.parquet")):
                df, problem = _read_shard(shard)
                if problem:
                    log.warning("rating shard %s is invalid (%s): moved aside to %s.invalid; its ratings will be asked "
                                "again", shard, problem, shard.name)
                    shard.rename(shard.with_name(shard.name + ".invalid"))
                    continue
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
