"""Experiment tracking. The run directory is the source of truth; wandb is a mirror. Only this module imports wandb.

The ``logger`` group builds the tracker with ``_target_`` (a partial: the pipeline adds the run's directory, config,
name, group and job type): ``logger=wandb`` (default, ``mode: offline``: written under the run dir,
``wandb sync <run_dir>/wandb/offline-run-*`` uploads later), ``logger=wandb logger.mode=online`` to sync live,
``logger=none`` to switch off.

Nothing outside the run directory: wandb 0.31 (read at that version) copies every file an artefact adds into
``$WANDB_DATA_DIR/artifacts/staging`` (default ``~/.local/share/wandb``) unless it is added with policy "immutable",
keeps uploaded files in ``$WANDB_CACHE_DIR/artifacts`` unless ``skip_cache``, and its service process (wandb-core)
writes ``core-debug-*.log`` and ``symon-debug-*.log`` under ``$WANDB_CACHE_DIR/wandb/logs`` (default
``~/.cache``) when it starts. Our artefact files are written once, atomically, into a directory no later run
writes, so they are added immutable and uncached; for the run, both variables point into ``<run_dir>/wandb``
(unless the user set them), and the service is ended with the run, so the next run's service logs into its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


class Tracker:
    """No-op tracker (``logger=none``); :class:`WandbTracker` mirrors every call to wandb."""

    def __init__(self, run_dir: Path | None = None, config: dict[str, Any] | None = None, **_: Any): ...

    def log_metrics(self, metrics: dict[str, Any]) -> None: ...

    def log_table(self, key: str, df: pd.DataFrame) -> None: ...

    def log_image(self, key: str, path: Path) -> None: ...

    def log_artifact(self, name: str, kind: str, paths: list[Path], seen_dir: Path | None = None) -> None: ...

    def log_summary(self, text: str) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


def files_digest(paths: list[Path]) -> str:
    """sha256 over the files' names and bytes: the content identity of an artefact."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


WANDB_HOME_DIRS = {"WANDB_DATA_DIR": "data", "WANDB_CACHE_DIR": "cache"}  # wandb's folders, under <run_dir>/wandb
_OURS: dict[str, str] = {}  # the values this module set (a value the user set is left alone)


class WandbTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict[str, Any], project: str = "encore", mode: str = "offline",
                 group: str | None = None, job_type: str | None = None, entity: str | None = None,
                 tags: list[str] | None = None, name: str | None = None, log_artifacts: bool = True):
        os.environ.setdefault("WANDB_START_METHOD", "thread")
        os.environ.setdefault("WANDB_SILENT", "true")
        self._restore: dict[str, str | None] = {}
        for var, sub in WANDB_HOME_DIRS.items():
            if os.environ.get(var) in (None, _OURS.get(var)):
                self._restore[var] = os.environ.get(var)
                os.environ[var] = _OURS[var] = str(Path(run_dir).resolve() / "wandb" / sub)
        import wandb

        self.wandb, self.log_artifacts = wandb, log_artifacts
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run_dir), group=group, name=name,
                              job_type=job_type, config=config, tags=list(tags or []), reinit="finish_previous")

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.run.log(flat)

    def log_table(self, key: str, df: pd.DataFrame) -> None:
        self.run.log({key: self.wandb.Table(dataframe=df.reset_index(drop=True))})

    def log_image(self, key: str, path: Path) -> None:
        self.run.log({key: self.wandb.Image(str(path))})

    def log_artifact(self, name: str, kind: str, paths: list[Path], seen_dir: Path | None = None) -> None:
        """Log the files as one artefact, once per content: with ``seen_dir`` (shared by the jobs of a sweep), a
        digest already recorded there is not logged again; the run records the digest in its summary either way."""
        if not self.log_artifacts or not paths:
            return
        digest = files_digest(paths)
        self.run.summary[f"{kind}_digest"] = digest
        marker = Path(seen_dir) / digest if seen_dir is not None else None
        if marker is not None and marker.exists():
            log.info("artefact %s (%s) already logged by an earlier run: not logged again", name, digest)
            return
        art = self.wandb.Artifact(name, type=kind, metadata={"digest": digest})
        for p in paths:  # written once into this run's directory: no staging copy, no cache copy
            art.add_file(str(p), policy="immutable", skip_cache=True)
        self.run.log_artifact(art)
        if marker is not None:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()

    def log_summary(self, text: str) -> None:
        self.run.summary["summary"] = text

    def finish(self, exit_code: int = 0) -> None:
        """``exit_code`` 1 marks the run failed in wandb (a crashed stage must not look successful). The service
        ends with the run (its logs are in this run's directory) and wandb's folders point back where they were."""
        try:
            self.run.finish(exit_code=exit_code)
            self.wandb.teardown(exit_code=exit_code)
        finally:
            for var, old in self._restore.items():
                if old is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = old
