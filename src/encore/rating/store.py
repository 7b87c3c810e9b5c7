"""Sharded, resumable rating store.

Layout: ``<root>/<rater_key>/shard-*.parquet``, one shard per completed chunk, each written atomically. A row is one
(response, rule) rating: ``item`` (hash of prompt, response and the rule as the rater reads it, see
:func:`encore.rating.rule_input`), ``rule``, ``value`` (NaN when missing) and ``reason`` (empty when the rating was
obtained, else why not); the shard's parquet metadata holds a checksum of its rows, checked on every load. A killed run loses at most the chunk in flight; the
next run reads every shard, rates only what is absent, and assembles exactly the table an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from encore.cache.artifacts import content_hash, write_bytes

log = logging.getLogger(__name__)


TRANSIENT = "transient: "  # reason prefix of a failure that may pass (server down, overloaded): never stored


CHECKSUM = b"encore_checksum"  # parquet schema metadata: the shard's content checksum as written
MARKER = "CHECKSUMMED"  # in a store dir: every shard carries a checksum, so one without is rejected
_MARK = b"every rating shard in this directory carries a checksum of its rows (encore.rating.store)\n"


def shard_checksum(df: pd.DataFrame) -> str:
    """SHA-256 of a shard's rows (item, rule, value bytes, reason): any edited rating or reason changes it."""
    h = hashlib.sha256()
    for col in ("item", "rule", "reason"):
        h.update("\x1f".join(df[col].astype(str)).encode("utf-8") + b"\x1e")
    h.update(np.ascontiguousarray(pd.to_numeric(df["value"], errors="coerce").to_numpy(np.float64)).tobytes())
    return h.hexdigest()


def _read_shard(path: Path) -> tuple[pd.DataFrame | None, str]:
    """A shard and "" when it is sound (a shard with no checksum is sound and ``"unverified"``); else None and what
    is wrong with it."""
    try:
        table = pq.read_table(path)
        df = table.to_pandas()
    except Exception as e:  # noqa: BLE001 - any unreadable file (truncated, not parquet) is the same problem
        return None, f"unreadable: {type(e).__name__}"
    if set(df.columns) != {"item", "rule", "value", "reason"}:
        return None, f"columns {sorted(df.columns)}"
    recorded = (table.schema.metadata or {}).get(CHECKSUM)
    if recorded is not None and recorded.decode() != shard_checksum(df):
        return None, "its rows do not match the checksum written with them (edited after it was rated)"
    v = pd.to_numeric(df["value"], errors="coerce").to_numpy(float)
    missing, why = np.isnan(v), df["reason"].astype(str).to_numpy() != ""
    if ((v < 0) | (v > 1))[~missing].any():
        return None, "ratings outside [0, 1]"
    if (missing != why).any():
        return None, "a missing rating without a reason, or a reason beside a rating"
    return df, "" if recorded is not None else "unverified"


def _write(path: Path, df: pd.DataFrame) -> Path:
    """A shard with its checksum in the parquet schema metadata, written atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), CHECKSUM: shard_checksum(df).encode()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return write_bytes(path, buf.getvalue().to_pybytes())


def _move_aside(shard: Path, problem: str) -> None:
    """Rename an invalid shard to ``*.invalid``. Safe when several processes find the same bad shard at once (a
    SLURM array of shard jobs): the rename is atomic, one of them wins, and the others find the shard gone, which
    is the same outcome."""
    try:
        shard.rename(shard.with_name(shard.name + ".invalid"))
    except FileNotFoundError:  # another process moved it aside (or a cleanup removed it) first
        log.info("rating shard %s was moved aside by another process", shard)
        return
    log.warning("rating shard %s is invalid (%s): moved aside to %s.invalid; its ratings will be asked again",
                shard, problem, shard.name)


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
            stamped, enforced = [], (self.dir / MARKER).exists()
            for shard in sorted(self.dir.glob("shard-*.parquet")):
                df, problem = _read_shard(shard)
                if problem == "unverified" and enforced:
                    df, problem = None, "no checksum, in a store whose every shard carries one (rewritten by hand?)"
                if df is None:
                    _move_aside(shard, problem)
                    continue
                if problem == "unverified":  # written before shards carried checksums: stamped once, then enforced
                    _write(shard, df)
                    stamped.append(shard.name)
                table.update(zip(df["item"], zip(df["value"].astype(float), df["reason"].astype(str))))
            if stamped:
                log.warning("%d rating shard(s) in %s were written without a checksum (an older version); they passed "
                            "the range checks and now carry one, so a later edit is caught", len(stamped), self.dir)
            if table and not enforced:
                write_bytes(self.dir / MARKER, _MARK)
            self._table = table
        return self._table

    def write_shard(self, items: list[str], rules: list[str], values: np.ndarray, reasons: list[str]) -> Path:
        df = pd.DataFrame({"item": items, "rule": rules, "value": np.asarray(values, float), "reason": reasons})
        name = f"shard-{time.time_ns():020d}-{os.getpid()}.parquet"  # sortable by write time
        path = _write(self.dir / name, df)
        if not (self.dir / MARKER).exists():
            write_bytes(self.dir / MARKER, _MARK)
        table = self.load()
        table.update(zip(items, zip(df["value"], df["reason"])))
        return path

    def n_shards(self) -> int:
        return len(list(self.dir.glob("shard-*.parquet")))
