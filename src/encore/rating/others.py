"""Ratings of the same pairs by another rater: found before a rating job starts, so a run never re-rates silently.

Every store directory ``<root>/<rater_key>/`` carries ``identity.json``: the rater's identity (what its key hashes)
and the command-line overrides that chose it (``rater=vllm_server rater.model=...``). Item keys hash the prompt,
the response and the rule as the rater reads it, never the rater, so a rating job's pending item keys can be looked
up in every other store. When another store holds most of them, the run names that store's rater and the override
that uses its ratings (:class:`OtherRatings`) instead of starting the job; ``rating.other_raters=rate`` rates anew.

For stores written before ``identity.json`` existed, the one case that can be named exactly is a rater whose key
differs only by its dtype (a machine-chosen ``auto`` recorded as the dtype it became): ``rater.dtype=bfloat16``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from encore.cache.artifacts import content_hash, write_json

log = logging.getLogger(__name__)
IDENTITY = "identity.json"
SAMPLE = 2000  # pending item keys looked up in each other store
COVERS = 0.5  # share of that sample another store must hold to count as holding the job's ratings
DTYPES = ("bfloat16", "float32", "float16")


class OtherRatings(RuntimeError):
    """A rating job whose ratings another rater's store already holds."""


def record_identity(store_dir: Path, identity: dict[str, Any], overrides: Sequence[str] | None) -> None:
    """Write ``identity.json`` once per store (the first run that rates into it)."""
    path = store_dir / IDENTITY
    if not path.exists():
        write_json(path, {"identity": identity, "overrides": list(overrides) if overrides is not None else None})


def _held(store_dir: Path, sample: set[str]) -> set[str]:
    """The keys of ``sample`` that a store's shards hold (read shard by shard, the item column only)."""
    held: set[str] = set()
    for shard in store_dir.glob("shard-*.parquet"):
        try:
            items = pd.read_parquet(shard, columns=["item"])["item"]
        except Exception:  # noqa: BLE001 - an unreadable shard holds nothing; its own store moves it aside on load
            continue
        held.update(items[items.isin(sample)])
        if len(held) == len(sample):
            break
    return held


def find_others(root: Path, own: str, pending: Sequence[str]) -> list[tuple[Path, float]]:
    """Other store directories under ``root`` holding at least :data:`COVERS` of a sample of the ``pending`` item
    keys, with the share they hold, best first."""
    sample = set(list(pending)[:SAMPLE])
    if not sample or not root.is_dir():
        return []
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name != own):
        share = len(_held(d, sample)) / len(sample)
        if share >= COVERS:
            found.append((d, share))
    return sorted(found, key=lambda t: -t[1])


def _dtype_override(rater: Any, key: str) -> str | None:
    """``rater.dtype=<d>`` when this rater with that explicit dtype has the store's key."""
    if not dataclasses.is_dataclass(rater) or "dtype" not in {f.name for f in dataclasses.fields(rater)}:
        return None
    for d in DTYPES:
        try:
            if content_hash(dataclasses.replace(rater, dtype=d).identity()) == key:
                return f"rater.dtype={d}"
        except (TypeError, ValueError):
            return None
    return None


def override_for(store_dir: Path, rater: Any) -> tuple[str, dict[str, Any] | None]:
    """The overrides that make a run's rater the one behind ``store_dir`` (so its ratings are used), and that
    rater's identity when recorded."""
    rec = None
    if (store_dir / IDENTITY).exists():
        rec = json.loads((store_dir / IDENTITY).read_text(encoding="utf-8"))
    if rec and rec.get("overrides"):
        return " ".join(rec["overrides"]), rec["identity"]
    dtype = _dtype_override(rater, store_dir.name)
    if dtype:
        return dtype, rec["identity"] if rec else None
    if rec:
        return f"the rater settings with this identity: {json.dumps(rec['identity'], sort_keys=True)}", rec["identity"]
    return "the rater settings that wrote it (no identity recorded: the store predates identity.json)", None


def check_others(root: Path, own: str, pending: Sequence[str], n_ratings: int, rater: Any, policy: str) -> None:
    """Stop (``policy="stop"``) or warn (``"warn"``, ``"rate"``) when another store holds the pending ratings."""
    others = find_others(root, own, pending)
    if not others:
        return
    d, share = others[0]
    override, identity = override_for(d, rater)
    what = f"{identity.get('kind')} rater {identity.get('model')}" if identity else f"the rater of store {d.name}"
    msg = (f"{n_ratings} rating(s) are not in this rater's cache ({root / own}), but {what} already rated "
           f"{share:.0%} of them (store {d}).")
    if policy == "stop":
        raise OtherRatings(f"{msg} To use those ratings, run with: {override}. To rate anew with this rater "
                           "(its ratings are cached beside the others), add rating.other_raters=rate")
    log.warning("%s Rating anew with this rater (rating.other_raters=%s); to use those instead: %s", msg, policy,
                override)
