"""Content-addressed artefacts, written atomically.

Every stage's output is keyed by a hash of *what produced it* (data fingerprint, rule texts, rater or model config), so
a later run with the same inputs reuses it and a run killed half-way never leaves a file that looks finished: each
file is written to a temporary name in the same directory and renamed into place (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
import tempfile
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from encore.cache.cache_only import refuse_compute
from encore.errors import SettingError

log = logging.getLogger(__name__)


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file under this process's umask (mkstemp's 0600 would lock a
    cache shared by a team out of everyone else's reach)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()

def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable hex digest of JSON-serialisable parts (dict keys sorted, so key order never changes a key)."""
    payload = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def array_hash(a: np.ndarray, length: int = 16) -> str:
    """Content hash of an array's values (e.g. the ratings a model was trained on)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:length]


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    path = Path(path)
    with filesystem_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


class NotWritable(SettingError):
    """A folder this job must write into (a cache miss in a read-only cache, a read-only run directory): one
    message naming the folder and the setting that moves it, no traceback."""

    def __init__(self, path: Path, error: OSError):
        folder = next((p for p in path.parents if p.exists()), path.parent)
        cache = os.environ.get("ENCORE_CACHE_DIR") or str(Path.home() / ".cache" / "encore")
        in_cache = Path(cache).expanduser() in (path, *path.parents)
        fix = ("set cache_dir=<a writable folder> (or ENCORE_CACHE_DIR; copy this cache there to reuse what it "
               "holds)" if in_cache else "set cache_dir=<a writable folder> (or ENCORE_CACHE_DIR) if it is the "
               "artefact cache, hydra.run.dir (or ENCORE_RUNS_DIR) if it is the run directory")
        super().__init__(f"{folder} is not writable ({error.strerror or os.strerror(error.errno)}), and this job must "
                         f"write {path} into it (what it needs is not there yet). Fix: {fix}, or make {folder} writable")


@contextmanager
def filesystem_errors(path: str | Path) -> Iterator[None]:
    """Errors from the filesystem while writing ``path`` reach the user as what they are, naming the path: an
    OSError raised without a file name (``write``/``fsync`` give none) gets ``path``; an error from a writer that
    hides the OS error (torch's C++ streams: "basic_ios::clear: iostream error"; safetensors' IoError) becomes the
    OSError the filesystem shows for ``path``: ENOSPC "No space left on device" when it has no free blocks or
    inodes left, EFBIG when a file-size limit is set. A read-only folder (EROFS, EACCES, EPERM) is
    :class:`NotWritable`. Anything else is raised unchanged."""
    import errno

    try:
        yield
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise NotWritable(Path(path), e) from e
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
    except Exception as e:
        found = _filesystem_cause(Path(path), str(e))
        if found is None:
            raise
        raise found from e


def _filesystem_cause(path: Path, message: str) -> OSError | None:
    """The OSError behind a writer's error: the OS error number it quotes ("os error 28"), else what the
    filesystem shows (no free block or inode: ENOSPC; a file-size limit: EFBIG), else None."""
    import errno
    import re
    import resource

    quoted = re.search(r"os error (\d+)", message)
    if quoted or "No space left on device" in message:
        code = int(quoted.group(1)) if quoted else errno.ENOSPC
        return OSError(code, os.strerror(code), str(path))
    where = next((p for p in (path, *path.parents) if p.exists()), None)
    if where is None:
        return None
    st = os.statvfs(where)
    if st.f_bavail * st.f_frsize < (1 << 20) or (st.f_files and st.f_favail == 0):  # under 1 MiB or no inode left
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        return OSError(errno.EFBIG, f"{os.strerror(errno.EFBIG)} (RLIMIT_FSIZE {soft:,} bytes)", str(path))
    return None


def write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic_write(Path(path), lambda fh: fh.write(data))


def write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (RFC 8259): NaN and infinities become null, which every JSON reader accepts."""
    text = json.dumps(_strict(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    return write_bytes(path, (text + "\n").encode("utf-8"))


def _strict(obj: Any) -> Any:
    if not isinstance(obj, np.generic) and callable(getattr(obj, "item", None)) and getattr(obj, "ndim", None) == 0:
        obj = obj.item()  # a 0-d torch tensor (torchao's optimisers keep lr as one): its number
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _strict(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_frame(path: str | Path, df: pd.DataFrame) -> Path:
    """Write a DataFrame as ``.csv`` or ``.parquet`` (chosen by suffix), atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        return write_bytes(path, df.to_csv(index=False).encode("utf-8"))
    if path.suffix == ".parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return write_bytes(path, buf.getvalue())
    raise ValueError(f"write_frame: unsupported suffix {path.suffix!r} for {path}; use .csv or .parquet")


def write_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """Save named arrays as one ``.npz``, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


KEY = "_cache_key"
CHECKSUM = "_checksum"


def arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes (names sorted): any edited value changes it."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cached_arrays(path: Path, compute: Callable[[], dict[str, np.ndarray]],
                  check: Callable[[dict[str, np.ndarray]], str | None] | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """Return the arrays at ``path`` if present and valid, else compute, save atomically and return them.

    Valid: readable without pickle, carrying the cache key (the file name) it was written under and the checksum of
    its arrays as written (:func:`arrays_checksum`, so an edited value, or an entry rewritten without one, is
    caught), no infinite value, and whatever ``check`` (shapes, ranges) returns no problem for. An invalid entry is
    logged and recomputed, never used. The second value says whether the cache was hit, so callers and tests can assert that a sweep re-ran no
    model. In a cache-only job (:mod:`encore.cache.cache_only`) a miss
    raises instead of computing.
    """
    if path.exists():
        arrays, problem = _validated(path, check)
        if problem is None:
            return arrays, True
        log.warning("cache entry %s is invalid (%s): recomputing it", path, problem)
    refuse_compute(f"{path.parent.name}/{path.name}")
    arrays = compute()
    problem = check(arrays) if check else None
    if problem:  # our own computation failed its check: a bug or a broken model, not a cache to keep
        raise RuntimeError(f"computed arrays for {path.name} fail their check: {problem}")
    write_arrays(path, **arrays, **{KEY: np.array(path.stem), CHECKSUM: np.array(arrays_checksum(arrays))})
    return arrays, False


def _validated(path: Path, check: Callable[[dict[str, np.ndarray]], str | None] | None
               ) -> tuple[dict[str, np.ndarray], str | None]:
    """The entry's arrays (read once, its key removed) and what is wrong with them, or None."""
    try:
        arrays = read_arrays(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        return {}, f"unreadable: {type(e).__name__}"
    if str(arrays.pop(KEY, "")) != path.stem:
        return arrays, "no cache key recorded inside, or another entry's"
    recorded = str(arrays.pop(CHECKSUM, ""))
    if not recorded:
        return arrays, "no checksum recorded inside (written by hand or by an older version)"
    if recorded != arrays_checksum(arrays):
        return arrays, "its arrays do not match the checksum written with them (edited after it was cached)"
    for name, a in arrays.items():
        if a.dtype.kind == "f" and np.isinf(a).any():
            return arrays, f"{name} holds infinite values"
    return arrays, check(arrays) if check else None


def expect(arrays: dict[str, np.ndarray], finite: bool = True, **shapes: tuple) -> str | None:
    """A ``check`` for :func:`cached_arrays`: each named array has the given shape (None matches any size on that
    axis) and, with ``finite``, no NaN."""
    for name, shape in shapes.items():
        a = arrays.get(name)
        if a is None:
            return f"{name} is missing"
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            return f"{name} has shape {a.shape}, expected {shape}"
        if finite and a.dtype.kind == "f" and np.isnan(a).any():
            return f"{name} holds NaN"
    return None


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory (a unique name) to fill; on success it replaces ``path``, on failure it
    is removed, so a killed save never leaves a directory that looks finished (a model, an export). A directory
    already at ``path`` (an older copy, or one a concurrent writer of the same key just put there) is renamed aside
    to a unique name first and removed after, so writers of one path never fail on each other."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        for attempt in range(64):  # writers of one key on a busy machine can keep swapping for a while (8 lost once)
            try:
                tmp.rename(path)  # atomic; fails only while a non-empty directory is at path
                return
            except OSError:
                aside = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
                try:
                    path.rename(aside)
                except FileNotFoundError:  # another writer moved it first: back off a little, try again
                    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                    continue
                shutil.rmtree(aside, ignore_errors=True)
        raise OSError(f"could not move {tmp} to {path}: another writer kept replacing it")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
