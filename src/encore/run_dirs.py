"""No empty run directories: a Hydra callback that removes the directory of a job that failed before writing a
result (its error is on stderr; what is left would be Hydra's bookkeeping and an empty log), and the directory of
a multirun none of whose jobs left one. Registered in ``conf/config.yaml`` under ``hydra.callbacks``."""

from __future__ import annotations

import atexit
import logging
import shutil
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from encore.report.style import NAMES_FILE

# what Hydra and a run's first lines write before any result: a directory holding only these found nothing
BOOKKEEPING = {".hydra", "wandb", NAMES_FILE, "multirun.yaml"}


def holds_results(out: Path) -> bool:
    """Whether ``out`` holds anything beyond Hydra's bookkeeping, job logs and the wandb mirror."""
    return out.is_dir() and any(p.name not in BOOKKEEPING and p.suffix != ".log" for p in out.iterdir())


def _close_logs_in(out: Path) -> None:
    """Detach and close the log handlers writing into ``out`` (Hydra's ``<job>.log``) before it is removed."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).resolve().is_relative_to(out.resolve()):
            root.removeHandler(h)
            h.close()


def remove_if_empty(out: Path) -> bool:
    """Remove ``out`` when it holds no result; returns whether it did."""
    if not out.is_dir() or holds_results(out) or any(p.is_dir() and p.name not in BOOKKEEPING for p in out.iterdir()):
        return False
    _close_logs_in(out)
    shutil.rmtree(out, ignore_errors=True)
    try:
        out.parent.rmdir()  # the experiment's (or sweep's) directory, only when nothing else is in it
    except OSError:
        pass
    return True


class RemoveEmptyRunDirs(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.FAILED:
            remove_if_empty(Path(config.hydra.runtime.output_dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # at the end of the launching process, whether the sweep succeeded or not (Hydra skips on_multirun_end
        # when a job fails): a sweep directory none of whose jobs kept a directory goes too
        atexit.register(remove_if_empty, Path(config.hydra.sweep.dir))
