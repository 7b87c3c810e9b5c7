"""Shared wiring for the thin Hydra runners: logging and the run directory (a failed run's empty directory is
removed by the Hydra callback in encore.run_dirs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import encore.run_dirs  # noqa: F401  registers ${encore_run:}, the launch token in hydra.run.dir


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
    quiet_libraries()
    out = run_dir()
    result = stage(cfg, out)
    print(f"run dir: {out}")
    return result
