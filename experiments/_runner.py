"""Shared wiring for the thin Hydra runners: logging, the run directory (a failed run's empty directory is removed
by the Hydra callback in encore.run.run_dirs), ``--help`` written from the composition (``_help``), and input errors
reported as their message alone."""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

import encore.data.names  # noqa: F401  registers ${encore_stem:}: an own file names its run (data=local)
import encore.run.run_dirs  # noqa: F401  registers ${encore_run:}, the launch token in hydra.run.dir
from _help import register
from encore.run.override_errors import install

register()  # ${encore_help:}, the --help text (conf/config.yaml's hydra.help.template)
install()  # a mistyped group, option or key ends in our message (the key, the value, the nearest names, the fix)


class InputError(CompactHydraException):
    """An error in what the user gave (a setting, a file, a cache the job reads): Hydra prints the message alone,
    with no traceback (hydra/_internal/utils.py ``run_and_report``); ``HYDRA_FULL_ERROR=1`` prints the traceback of
    its cause."""


def input_errors() -> tuple[type[Exception], ...]:
    """Our errors whose message names the field, its value and the fix (or the command that fills a cache)."""
    from encore.cache.cache_only import CacheMiss
    from encore.errors import DataError
    from encore.rating.engine import NotRated, TooManyMissing
    from encore.rating.others import OtherRatings
    from encore.rating.shards import MissingShards
    from encore.rules import RuleError
    from encore.scale.arch import ArchError
    from encore.scale.hardware import HardwareError
    from encore.scale.placement import DoesNotFit
    from encore.errors import SettingError

    return (SettingError, DataError, RuleError, ArchError, HardwareError, CacheMiss, NotRated, MissingShards,
            TooManyMissing, OtherRatings, DoesNotFit)


def names_a_setting(message: str, cfg: DictConfig) -> bool:
    """A ValueError raised by a check of ours names the setting first (``method.encore.tau=-1: ...``,
    ``train.optim='sgd'; ...``): one of this config's keys, then ``.``, ``=``, ``:`` or a space."""
    m = re.match(r"([A-Za-z_]\w*)[.=: ]", message)
    return bool(m) and m.group(1) in cfg


@contextmanager
def reported(cfg: DictConfig) -> Iterator[None]:
    """Input errors leave the job as :class:`InputError` (their message alone); anything else, a bug or an engine's
    failure, keeps its traceback."""
    from encore.run.folders import check_cache

    try:
        check_cache(cfg)  # an unwritable cache folder is named now, not after the first stage
        yield
    except input_errors() as e:
        raise InputError(str(e)) from e
    except ValueError as e:
        if names_a_setting(str(e), cfg):
            raise InputError(str(e)) from e
        raise


def run_dir() -> Path:
    """Hydra's output dir for this job: every file a run writes goes here, never the current directory."""
    return Path(HydraConfig.get().runtime.output_dir)


def quiet_libraries() -> None:
    """Quiet third-party loggers; also joins this process to its launch (``torchrun`` / ``accelerate launch``, on
    CPU too) before any stage asks accelerate how many processes there are."""
    from encore.scale.distributed import launch_state

    launch_state()
    for name in ("httpx", "urllib3", "filelock", "datasets", "transformers", "wandb", "fontTools"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # torchao (8-bit AdamW) reports its CUDA-only kernels missing on every CPU import, and torch's pytree a
    # deprecation in torchao's registration: neither is actionable for a user of this package.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_job(stage: Callable[[DictConfig, Path], Any], cfg: DictConfig) -> Any:
    """Run ``stage(cfg, run_dir)`` and print where its results are."""
    with reported(cfg):
        quiet_libraries()
        out = run_dir()
        result = stage(cfg, out)
    print(f"run dir: {out}")
    return result
