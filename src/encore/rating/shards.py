"""Rating split over jobs (``rating.num_shards=N rating.shard=i``).

The unique (prompt, response) texts of a pair table are put in one canonical order (longest first, ties by content
hash: independent of row order) and cut into chunks of ``chunk_size``; the chunks go to the N shards longest-first,
each to the shard with the least text so far (a deterministic greedy balance: chunks of long prompts do not pile up
on one shard). Every job computes the same chunks and the same assignment, so N jobs rate disjoint slices into the
shared store and, chunk for chunk, send the rater exactly the inputs one unsharded run would: the assembled table
is identical. Each finished job leaves a
record; a later stage that finds ratings missing where shard records exist names the shards and the command that
fills them instead of rating a 70B model's worth of prompts in the wrong process.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from encore.cache.artifacts import content_hash, write_json


@dataclass(frozen=True)
class Slicing:
    num_shards: int
    shard: int

    @classmethod
    def from_config(cls, num_shards: int | None, shard: int | None) -> "Slicing | None":
        """None when rating is not split; the settings are checked here, before anything is rated."""
        if num_shards is None and shard is None:
            return None
        if num_shards is None or shard is None:
            raise ValueError(f"rating.num_shards={num_shards}, rating.shard={shard}: set both (e.g. rating.num_shards=8 "
                             "rating.shard=0) or neither")
        if int(num_shards) < 1 or not 0 <= int(shard) < int(num_shards):
            raise ValueError(f"rating.shard={shard} of rating.num_shards={num_shards}: need num_shards >= 1 and "
                             f"0 <= shard < num_shards")
        return cls(int(num_shards), int(shard))


class MissingShards(RuntimeError):
    """Ratings that shard jobs were meant to fill are absent."""

    def __init__(self, missing: list[int], num_shards: int, n_texts: int):
        self.missing, self.num_shards, self.n_texts = missing, num_shards, n_texts
        super().__init__(self.message())

    def with_command(self, command: str) -> "MissingShards":
        """The same error, naming ``command`` (the run's own overrides) as the one that fills the shards."""
        self.args = (self.message(command),)
        return self

    def message(self, command: str = "python experiments/rate.py <your overrides>") -> str:
        todo = ",".join(map(str, self.missing))
        one = "\n".join(f"  {command} rating.num_shards={self.num_shards} rating.shard={i}" for i in self.missing[:8])
        more = f"\n  ... ({len(self.missing) - 8} more)" if len(self.missing) > 8 else ""
        return (f"ratings missing for {self.n_texts} response(s) in shard(s) {todo} of {self.num_shards}; fill them "
                f"first:\n{one}{more}\nor as one array job: {command.replace('rate.py', 'rate.py -m', 1)} "
                f"rating.num_shards={self.num_shards} rating.shard={todo} hydra/launcher=slurm\n"
                f"or rate the rest in this process: add rating.num_shards=1 rating.shard=0 to this command")


def canonical_chunks(lengths: list[int], hashes: list[str], chunk_size: int) -> list[list[int]]:
    """Indices of texts (given by length and content hash) grouped into chunks in canonical order: longest first,
    then by hash, so similar lengths share a chunk and the order never depends on the rows' order."""
    order = sorted(range(len(hashes)), key=lambda i: (-lengths[i], hashes[i]))
    return [order[s: s + chunk_size] for s in range(0, len(order), chunk_size)]


def assign(chunks: list[list[int]], lengths: list[int], num_shards: int) -> list[int]:
    """The shard of every chunk: in canonical order (longest first), each to the shard with the fewest characters
    so far, ties to the lower shard index."""
    load, out = [0] * num_shards, []
    for chunk in chunks:
        s = min(range(num_shards), key=lambda i: (load[i], i))
        load[s] += sum(lengths[i] for i in chunk)
        out.append(s)
    return out


def slice_key(hashes: list[str], rule_texts: list[str]) -> str:
    """What a shard record is about: the set of texts (order-free) and the rules as the rater reads them
    (:func:`encore.rating.rule_input`); the rater is the store directory the record sits in."""
    return content_hash(sorted(hashes), rule_texts)


def record_path(store_dir: Path, key: str, slicing: Slicing) -> Path:
    return store_dir / "slices" / f"{key}-{slicing.num_shards}-{slicing.shard}.json"


def write_record(store_dir: Path, key: str, slicing: Slicing, chunk_size: int, n_chunks: int, n_new: int) -> Path:
    return write_json(record_path(store_dir, key, slicing), {
        "num_shards": slicing.num_shards, "shard": slicing.shard, "chunk_size": chunk_size, "n_chunks": n_chunks,
        "n_new": n_new, "finished": time.time()})


def latest_record(store_dir: Path, key: str) -> dict | None:
    """The most recently finished shard record for this slice key (its num_shards and chunk_size are the ones to
    name missing shards by), or None when the texts were never rated in shards."""
    recs = [json.loads(p.read_text()) for p in (store_dir / "slices").glob(f"{key}-*.json")]
    return max(recs, key=lambda r: r["finished"]) if recs else None


def with_replicas(report: dict, parts: list[dict]) -> dict:
    """The assembling process's rating report with what its replica processes (:mod:`encore.node.replicas`) rated
    in this run: it finds their ratings in the cache, but they are this run's new ones, so "from the cache" and "new"
    count as one process rating everything would (cached + new = all ratings of the run either way)."""
    if not parts:
        return report
    n_new = sum(int(p.get("n_new") or 0) for p in parts)
    seconds = max(float(p.get("seconds") or 0.0) for p in parts)
    return {**report, "n_cached": report["n_cached"] - n_new, "n_new": report["n_new"] + n_new,
            "replicas": len(parts), "seconds": seconds + report.get("seconds", 0.0),
            "ratings_per_s": n_new / seconds if n_new and seconds else report.get("ratings_per_s")}
