"""Run directories: unique, and never left empty.

Unique: ``hydra.run.dir`` is ``runs/<experiment>/<time>-${encore_run:}``: the time to the second, then a token that is the
same for every process of one launch and differs between launches. Two runs started in the same second get two
directories; the ranks of one ``accelerate launch`` / ``torchrun`` job get one (they share the launcher's rendezvous
address and port, and on one node its process id). The resolver is registered when the runners import
``_runner``; it caches its value, so every read of the run dir in a process, and every job of a Hydra multirun
(Hydra copies the resolver cache into each job's config), sees the same token.

Never empty: a Hydra callback that removes the directory of a job that failed before writing a
result (its error is on stderr; what is left would be Hydra's bookkeeping and an empty log), and the directory of
a multirun none of whose jobs left one. Registered in ``conf/config.yaml`` under ``hydra.callbacks``.

A failed run is any job that raised, SIGTERM and SIGINT included: while a job runs, SIGTERM (``kill``, a scheduler's
stop) and SIGINT (Ctrl-C) are raised as :class:`Terminated` where no other handler was installed (submitit installs
its own, which is kept; Python's KeyboardInterrupt would pass Hydra's job bookkeeping by, as it is no Exception), so
the tracker records the failure and this callback runs. A failed job that had written results keeps its directory:
the finished stages' files, its log ending with the error, and no ``metrics.json`` (the mark of a finished run,
written before the figures; ``make_figures.py`` and the notebook read only directories that have it). Only SIGKILL
(``kill -9``, power loss) skips all of this and leaves the directory as it was.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

import encore.run.folders  # noqa: F401  ${encore_runs:}, the runs folder at the head of hydra.run.dir
from encore.cache.artifacts import content_hash
from encore.report.style import NAMES_FILE

RESOLVER = "encore_run"


def run_token(environ: dict[str, str] | None = None) -> str:
    """Six hex digits naming this launch. A distributed launch (``WORLD_SIZE`` > 1) is named by its rendezvous
    (``MASTER_ADDR``, ``MASTER_PORT``, ``TORCHELASTIC_RUN_ID``, ``SLURM_JOB_ID``) and, when all its ranks are on one
    node, the launcher's process id (the ranks' parent); a single process by its host, process id and start time."""
    env = os.environ if environ is None else environ
    if int(env.get("WORLD_SIZE", "1")) > 1 and "MASTER_PORT" in env:
        one_node = env.get("LOCAL_WORLD_SIZE") == env.get("WORLD_SIZE")
        parts = ("launch", env.get("MASTER_ADDR"), env["MASTER_PORT"], env.get("TORCHELASTIC_RUN_ID"),
                 env.get("SLURM_JOB_ID"), os.getppid() if one_node else None)
    else:
        parts = ("process", socket.gethostname(), os.getpid(), time.time_ns())
    return content_hash(*parts, length=6)


def register() -> None:
    """Register ``${encore_run:}`` (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda: run_token(), use_cache=True)


register()


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


class Terminated(Exception):
    """SIGTERM or SIGINT during a job, raised where the job's code was, so the run fails like any other."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


# each signal a job turns into Terminated, with the handler it replaces only when that one is Python's own
_STOPS = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}


class RemoveEmptyRunDirs(Callback):
    _previous: dict | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._previous = {}
        try:
            for sig, default in _STOPS.items():
                if signal.getsignal(sig) == default:  # never over a launcher's own handler
                    self._previous[sig] = signal.signal(sig, _terminate)
        except ValueError:  # not the main thread (a launcher running jobs in threads): the defaults stay
            self._previous = {}

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        for sig, previous in (self._previous or {}).items():
            signal.signal(sig, previous)
        self._previous = None
        if job_return.status == JobStatus.FAILED:
            out = Path(config.hydra.runtime.output_dir)
            if not remove_if_empty(out):
                logging.getLogger(__name__).error("this run failed (%s: %s); its directory keeps what the stages "
                                                  "before the failure wrote, and no metrics.json", type(
                                                      job_return._return_value).__name__, job_return._return_value)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # at the end of the launching process, whether the sweep succeeded or not (Hydra skips on_multirun_end
        # when a job fails): a sweep directory none of whose jobs kept a directory goes too
        atexit.register(remove_if_empty, Path(config.hydra.sweep.dir))
