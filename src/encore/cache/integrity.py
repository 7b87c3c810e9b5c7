"""The size and SHA-256 of every file of a directory, recorded when it is complete and checked before it is reused
(training checkpoints, fine-tuned models): a flipped byte, a truncated copy or a file lost on the way is found
before anything reads it, and what fails is set aside, never deleted and never reused."""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def checksums(d: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size, "sha256": hex}}`` of every file under ``d`` except those named in ``skip``
    (the file that records them), hashed on a few threads (hashlib releases the GIL): an 8B model is tens of GB."""
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.name not in skip)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(sha256, files))
    return {p.relative_to(d).as_posix(): {"bytes": p.stat().st_size, "sha256": h} for p, h in zip(files, digests)}


def sha256(p: Path) -> str:
    h, buf = hashlib.sha256(), bytearray(1 << 24)
    view = memoryview(buf)
    with open(p, "rb") as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def mismatch(d: Path, files: dict[str, dict[str, Any]], skip: tuple[str, ...] = ()) -> str | None:
    """What differs between ``d`` and the recorded ``files`` (None: each is there with its size and checksum).
    Sizes are compared first, so a truncated file is named without hashing anything."""
    for rel, want in files.items():
        p = d / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want.get("bytes"):
            return f"{rel} has {p.stat().st_size} bytes, {want.get('bytes')} were written"
    actual = checksums(d, skip)
    bad = [rel for rel, want in files.items() if actual.get(rel, {}).get("sha256") != want.get("sha256")]
    return f"{', '.join(bad)} no longer match(es) the checksum written at save time" if bad else None


def set_aside(d: Path) -> Path | None:
    """Rename ``d`` to ``<name>.damaged-<token>`` beside it (kept for a look, read by nothing); None when another
    process moved it first."""
    aside = d.with_name(f"{d.name}.damaged-{uuid.uuid4().hex[:8]}")
    try:
        d.rename(aside)
    except FileNotFoundError:
        return None
    return aside
