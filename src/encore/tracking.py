"""Experiment tracking. The run directory is the source of truth; wandb is a mirror. Only this module imports wandb.

``logger=wandb`` (default, ``mode: offline``: written under the run dir, ``wandb sync <run_dir>/wandb/offline-run-*``
uploads later), ``logger=wandb logger.mode=online`` to sync live, ``logger=none`` to switch off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


class Tracker:
    """No-op tracker (``logger=none``); :class:`WandbTracker` mirrors every call to wandb."""

    def log_metrics(self, metrics: dict[str, Any]) -> None: ...

    def log_table(self, key: str, df: pd.DataFrame) -> None: ...

    def log_image(self, key: str, path: Path) -> None: ...

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class WandbTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict[str, Any], project: str = "encore", mode: str = "offline",
                 group: str | None = None, job_type: str | None = None, entity: str | None = None,
                 tags: list[str] | None = None):
        os.environ.setdefault("WANDB_START_METHOD", "thread")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run_dir), group=group,
                              job_type=job_type, config=config, tags=list(tags or []), reinit="finish_previous")

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.run.log(flat)

    def log_table(self, key: str, df: pd.DataFrame) -> None:
        self.run.log({key: self.wandb.Table(dataframe=df.reset_index(drop=True))})

    def log_image(self, key: str, path: Path) -> None:
        self.run.log({key: self.wandb.Image(str(path))})

    def log_artifact(self, name: str, kind: str, paths: list[Path]) -> None:
        art = self.wandb.Artifact(name, type=kind)
        for p in paths:
            art.add_file(str(p))
        self.run.log_artifact(art)

    def finish(self, exit_code: int = 0) -> None:
        """``exit_code`` 1 marks the run failed in wandb (a crashed stage must not look successful)."""
        self.run.finish(exit_code=exit_code)


def make_tracker(kind: str, run_dir: Path, config: dict[str, Any], **kwargs: Any) -> Tracker:
    if kind == "none":
        return Tracker()
    if kind == "wandb":
        return WandbTracker(run_dir, config, **kwargs)
    raise ValueError(f"logger.kind={kind!r}; use 'wandb' or 'none'")
