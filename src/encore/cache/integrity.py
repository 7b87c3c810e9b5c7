"""The size and SHA-256 of every file of a directory, recorded when it is complete and checked before it is reused
(training checkpoints, fine-tuned models, the converted SmolLM2 checkpoint): a flipped byte, a truncated copy, a
file lost on the way, a checksum list that lost an entry or was deleted is found before anything reads it, and what
fails is set aside, never deleted and never reused. :func:`digest` is a verified folder's identity, what the cache
keys of the ratings made with it record. The hashing can be shared out over the ranks of a launch
(:func:`share`), and :func:`verify_seconds` says how long a verification takes from the files' sizes and the
measured hash rate (:func:`hash_rate`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SUMS = "checksums.json"  # {"files": {relative path: {"bytes", "sha256"}}} beside a model's files
# =1: a model folder from before models carried checksums is reused unverified (logged each time); otherwise it
# counts as damaged, is set aside and rebuilt
REUSE_UNVERIFIED = "ENCORE_REUSE_UNVERIFIED"


def checksums(d: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size, "sha256": hex}}`` of every file under ``d`` except those named in ``skip``
    (the file that records them), hashed on a few threads (hashlib releases the GIL): an 8B model is tens of GB."""
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.name not in skip)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(sha256, files))
    return {p.relative_to(d).as_posix(): {"bytes": p.stat().st_size, "sha256": h} for p, h in zip(files, digests)}


def sizes(d: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size}}`` of every file under ``d`` except those named in ``skip``."""
    return {p.relative_to(d).as_posix(): {"bytes": p.stat().st_size}
            for p in sorted(d.rglob("*")) if p.is_file() and p.name not in skip}


def sha256(p: Path) -> str:
    h, buf = hashlib.sha256(), bytearray(1 << 24)
    view = memoryview(buf)
    with open(p, "rb") as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def mismatch(d: Path, files: dict[str, dict[str, Any]], skip: tuple[str, ...] = (),
             hashes: dict[str, str] | None = None) -> str | None:
    """What differs between ``d`` and the recorded ``files`` (None: each is there with its size and checksum).
    Sizes are compared first, so a truncated file is named without hashing anything. ``hashes``: the SHA-256 of
    each listed file, already computed (by the ranks of a launch, :func:`share`); otherwise hashed here."""
    for rel, want in files.items():
        p = d / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want.get("bytes"):
            return f"{rel} has {p.stat().st_size} bytes, {want.get('bytes')} were written"
    if hashes is None:
        hashes = hash_files(d, list(files))
    bad = [rel for rel, want in files.items() if hashes.get(rel) != want.get("sha256")]
    return f"{', '.join(bad)} no longer match(es) the checksum written at save time" if bad else None


def hash_files(d: Path, rels: list[str]) -> dict[str, str]:
    """``{relative path: SHA-256}`` of the named files of ``d``, on a few threads (hashlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1, len(rels)))) as pool:
        return dict(zip(rels, pool.map(lambda rel: sha256(d / rel), rels)))


def recorded(d: Path, sums: str = SUMS, quiet: bool = False) -> tuple[dict[str, dict[str, Any]] | None, str | None]:
    """(the files ``d/sums`` lists, None) or (None, what is wrong: absent, unreadable, empty). A folder without the
    list is damaged unless ``ENCORE_REUSE_UNVERIFIED=1`` (then ``({}, None)``: reused unverified, logged unless
    ``quiet``)."""
    try:
        files = json.loads((d / sums).read_text())["files"]
    except FileNotFoundError:
        if os.environ.get(REUSE_UNVERIFIED) == "1":
            if quiet:
                return {}, None
            log.warning("%s records no checksums (%s: written before models carried them, or deleted): reused "
                        "UNVERIFIED because %s=1", d, sums, REUSE_UNVERIFIED)
            return {}, None
        return None, (f"no {sums} (written before models carried checksums, or deleted); to reuse such a folder "
                      f"unverified set {REUSE_UNVERIFIED}=1")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{sums} is unreadable ({type(e).__name__}: {e})"
    if not isinstance(files, dict) or not files:
        return None, f"{sums} lists no files"
    return files, None


def unlisted(d: Path, files: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """Files of ``d`` the checksum list does not name (an entry removed from it, a file added later)."""
    return sorted(rel for p in d.rglob("*") if p.is_file() and p.name not in skip
                  and (rel := p.relative_to(d).as_posix()) not in files)


def damage(d: Path, sums: str = SUMS, hashes: dict[str, str] | None = None) -> str | None:
    """What is wrong with the folder ``d`` whose files ``d/sums`` lists (None: every file of it, and no other, has
    its recorded size and SHA-256). An absent, unreadable or partial list is damage (:func:`recorded`)."""
    files, wrong = recorded(d, sums)
    if wrong or not files:
        return wrong
    extra = unlisted(d, files, skip=(sums,))
    if extra:
        return f"{', '.join(extra[:3])} is not listed in {sums} (an entry was lost, or a file was added)"
    return mismatch(d, files, skip=(sums,), hashes=hashes)


def digest(files: dict[str, dict[str, Any]]) -> str:
    """A verified folder's identity: the SHA-256 of its sorted checksum list (path, bytes, SHA-256 of each file)."""
    body = json.dumps({k: [v.get("bytes"), v.get("sha256")] for k, v in sorted(files.items())}, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


# ----------------------------------------------------------------------------------------- shared over ranks
def share(files: dict[str, dict[str, Any]], rank: int, world: int) -> list[str]:
    """The files rank ``rank`` of ``world`` hashes: largest first, each to the rank with the fewest bytes so far
    (the same answer on every rank), so the slowest rank hashes about total / world bytes (at least the largest file)."""
    load, mine = [0] * world, []
    for rel, want in sorted(files.items(), key=lambda kv: (-int(kv[1].get("bytes") or 0), kv[0])):
        r = min(range(world), key=lambda i: (load[i], i))
        load[r] += int(want.get("bytes") or 0)
        if r == rank:
            mine.append(rel)
    return mine


@lru_cache(maxsize=1)
def hash_rate(sample: int = 1 << 26) -> float:
    """SHA-256 throughput of one thread of this machine in bytes/s, measured on ``sample`` bytes in memory (what a
    disk or network file system reads slower is not in it)."""
    data = os.urandom(1 << 22)
    start, h = time.perf_counter(), hashlib.sha256()
    for _ in range(max(1, sample >> 22)):
        h.update(data)
    return max(1, sample >> 22) * len(data) / max(time.perf_counter() - start, 1e-9)


def verify_seconds(sizes: list[int] | int, ranks: int = 1, rate: float | None = None, threads: int = 8) -> float:
    """Expected seconds to verify files of ``sizes`` bytes when ``ranks`` processes share them (:func:`share`) and
    each hashes on up to ``threads`` threads at ``rate`` bytes/s per thread (default: the measured
    :func:`hash_rate`): the slowest rank's bytes / (rate x threads it can use), never less than its largest file's
    bytes / rate (one file is hashed by one thread). ``sizes`` as one total (a plan's checkpoint size): total /
    ranks / rate. What the disk reads slower than ``rate`` adds to it."""
    rate = float(rate or hash_rate())
    if isinstance(sizes, int):  # one total (what a plan knows): spread evenly, as a sharded save is; one thread each
        return sizes / max(1, ranks) / rate
    files = {str(i): {"bytes": int(s)} for i, s in enumerate(sizes)}
    worst = 0.0
    for r in range(max(1, ranks)):
        mine = [files[k]["bytes"] for k in share(files, r, max(1, ranks))]
        if mine:
            worst = max(worst, max(sum(mine) / min(threads, len(mine)), max(mine)) / rate)
    return worst


def set_aside(d: Path) -> Path | None:
    """Rename ``d`` to ``<name>.damaged-<token>`` beside it (kept for a look, read by nothing); None when another
    process moved it first."""
    aside = d.with_name(f"{d.name}.damaged-{uuid.uuid4().hex[:8]}")
    try:
        d.rename(aside)
    except FileNotFoundError:
        return None
    return aside
