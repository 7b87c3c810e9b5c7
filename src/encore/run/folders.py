"""The two folders a run writes outside its own directory's contents, checked before anything is written: the runs
folder (``$ENCORE_RUNS_DIR``, else ``./runs`` of the folder the user runs from) and the artefact cache
(``cache_dir``: ``$ENCORE_CACHE_DIR``, else ``~/.cache/encore``). One that cannot be written (a path through a regular
file, a folder without write permission, a read-only filesystem) stops the run with one message naming the folder,
the reason and what to set, instead of the chained traceback of a ``mkdir`` deep in Hydra or a cache write. The check
creates nothing (a composition that only prints ``--help`` leaves no folder behind).

The runs folder is the ``${encore_runs:}`` resolver at the head of every runner's ``hydra.run.dir`` and
``hydra.sweep.dir``: Hydra resolves it when it creates the run directory, inside its error reporter, and prints a
:class:`FolderError`'s message alone (``HYDRA_FULL_ERROR=1``: the traceback). The cache is checked by
:func:`check_cache` when a job starts (``experiments/_runner.py``), unless the job only reads caches
(``cache_only=true``: a read-only shared cache is a valid setup for a sweep).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from encore.errors import SettingError

RESOLVER = "encore_runs"
RUNS_VARIABLE, CACHE_VARIABLE = "ENCORE_RUNS_DIR", "ENCORE_CACHE_DIR"


class FolderError(CompactHydraException, InterpolationResolutionError):
    """The runs folder cannot be written. An OmegaConf error so that OmegaConf passes it on from the resolver
    unchanged (``_initialized``: no ``full_key`` lines appended), a compact Hydra error so that Hydra prints its
    message alone."""

    _initialized = True


def cannot_write(folder: Path) -> str | None:
    """Why ``folder`` could not be created and written, or None when it could; nothing is created. The nearest part
    of the path that exists must be a folder this user may write into (``os.access``, which also says no on a
    read-only filesystem)."""
    path = folder.absolute()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                return f"{part} is a file, not a folder"
            if not os.access(part, os.W_OK | os.X_OK):
                return f"{part} is not writable here (permissions or a read-only filesystem)"
            return None
    return None


def unwritable(folder: str | Path, named: str, what: str, variable: str) -> str | None:
    """The message for ``folder`` (``named`` as the user set it) when it cannot be written, else None."""
    reason = cannot_write(Path(folder).expanduser())
    if reason is None:
        return None
    return (f"{named}: {what} cannot be written: {reason}. Fix: set {variable} to a folder you can write, e.g. "
            f"export {variable}=$HOME/encore-{'runs' if variable == RUNS_VARIABLE else 'cache'}")


def runs_folder() -> str:
    """``${encore_runs:}``: ``$ENCORE_RUNS_DIR``, else ``runs`` (relative: under the folder the user runs from),
    once it is known to be writable."""
    given = os.environ.get(RUNS_VARIABLE)
    folder = given or "runs"
    named = f"{RUNS_VARIABLE}={given}" if given else f"{Path(folder).absolute()} ({RUNS_VARIABLE} is not set: ./runs)"
    message = unwritable(folder, named, "the runs folder", RUNS_VARIABLE)
    if message is not None:
        raise FolderError(message)
    return folder


def check_cache(cfg: Any) -> None:
    """The job's ``cache_dir`` can be written, unless the job only reads caches or has no cache."""
    folder = cfg.get("cache_dir") if hasattr(cfg, "get") else None
    if not folder or cfg.get("cache_only", False):
        return
    given = os.environ.get(CACHE_VARIABLE)
    if given == str(folder):
        named = f"{CACHE_VARIABLE}={given}"
    elif given is None and Path(folder) == Path.home() / ".cache" / "encore":
        named = f"{folder} ({CACHE_VARIABLE} is not set)"
    else:  # cache_dir=... on the command line
        named = f"cache_dir={folder}"
    message = unwritable(folder, named, "the artefact cache", CACHE_VARIABLE)
    if message is not None:
        raise SettingError(message)


def register() -> None:
    """Register ``${encore_runs:}`` (idempotent; not cached: each run directory checks its folder)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, runs_folder, use_cache=False)


register()
