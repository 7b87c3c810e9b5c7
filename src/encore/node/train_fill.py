"""Every GPU of the node fine-tuning (``plan.accelerate_config=auto``, the default): the strategy and the number of
training processes follow from the GPUs, not from a file the user must remember to pass. On one GPU (or none) one
process trains; on ``n`` GPUs, ``n`` processes: data parallel (``conf/accelerate/ddp.yaml``) when a whole copy of the
model with its optimiser fits one GPU (the paper's ``train=finetune_1gpu``: 8-bit AdamW, bf16 weights), else FSDP
full shard (``conf/accelerate/fsdp.yaml``; ``train=finetune``'s fp32 master weights and AdamW), the first of the two
that the trainer accepts (:func:`encore.scale.distributed.check_combination`) and that fits
(:meth:`encore.rm.finetune.Finetune.placement`). The global batch (``train.global_batch``) is the same whatever
is chosen, so the model and its cache key are too. A named file (``plan.accelerate_config=conf/accelerate/...``) wins;
``single`` keeps one process.

``experiments/train_rm.py`` started as one process on a node asks :func:`choose` on the GPUs it sees and starts
itself again under ``accelerate launch`` with that file and ``--num_processes n`` (:func:`launch`); the plan asks the
same function on ``plan.gpus``, so what it prints is what runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIGS = {"ddp": "conf/accelerate/ddp.yaml", "fsdp": "conf/accelerate/fsdp.yaml"}
ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class TrainLaunch:
    strategy: str  # single, ddp, fsdp, zero3
    processes: int
    config: str | None  # the accelerate config file; None: one process, no launcher
    why: str = ""

    def describe(self) -> str:
        where = f"accelerate launch --config_file {self.config} --num_processes {self.processes}" if self.config \
            else "one process"
        return f"{self.strategy}, {self.processes} process(es): {where}" + (f" ({self.why})" if self.why else "")


def is_auto(setting: Any) -> bool:
    return setting is None or str(setting).strip().lower() in ("", "auto", "null", "none")


def choose(trainer: Any, encoder: Any, gpus: Any, setting: Any = "auto") -> TrainLaunch:
    """The launch that fills ``gpus`` (one machine's) for ``trainer`` on ``encoder``; ``setting`` is
    ``plan.accelerate_config``: ``auto``/null (choose), ``single`` (one process) or a config file (as written)."""
    from encore.scale.distributed import strategy_from_file

    if not is_auto(setting):
        if str(setting).strip().lower() == "single":
            return TrainLaunch("single", 1, None, "plan.accelerate_config=single")
        strategy, n = strategy_from_file(setting)
        return TrainLaunch(strategy, n, str(setting), f"plan.accelerate_config={setting}")
    if not hasattr(trainer, "placement") or gpus.count <= 1:
        return TrainLaunch("single", 1, None, "one GPU" if gpus.count == 1 else "no GPU" if not gpus.count else "")
    n, tried = gpus.count, []
    if hasattr(trainer, "split"):
        try:
            trainer.split(n)
        except ValueError as e:  # a global batch the GPUs do not divide: one process keeps the paper's batch
            return TrainLaunch("single", 1, None, str(e).split(";")[0])
    for strategy in ("ddp", "fsdp"):
        try:
            place = trainer.placement(encoder, gpus, strategy, n)
        except ValueError as e:  # a combination the trainer refuses (8-bit AdamW under FSDP)
            tried.append(f"{strategy}: {str(e).split(':')[0]}")
            continue
        if place.fits:
            return TrainLaunch(strategy, n, CONFIGS[strategy], f"chosen for {n} GPUs: the first of ddp, fsdp that "
                                                              "fits and the trainer accepts")
        tried.append(f"{strategy}: {place.fix or 'does not fit'}")
    return TrainLaunch("single", 1, None, "neither ddp nor fsdp fits on these GPUs (" + "; ".join(tried) + ")")


def command(script: str, overrides: list[str], how: TrainLaunch) -> list[str]:
    """``accelerate launch`` of ``script`` with this job's overrides, one process per GPU of this machine."""
    config = Path(how.config) if Path(how.config).is_absolute() else ROOT / how.config
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes",
            str(how.processes), "--num_machines", "1", str(Path(script).resolve()), *overrides]


def launch(cfg: Any, script: str, overrides: list[str]) -> bool:
    """Start ``script`` again under ``accelerate launch`` over this machine's GPUs when :func:`choose` picks more
    than one process and this process is not already a rank of a launch; False when this process trains alone."""
    from encore.run.pipeline import build
    from encore.scale.hardware import detect

    if int(os.environ.get("WORLD_SIZE") or 1) > 1 or os.environ.get("LOCAL_RANK") not in (None, ""):
        return False
    trainer = build(cfg.train)
    if not hasattr(trainer, "placement"):
        return False
    how = choose(trainer, build(cfg.model), detect(float(cfg.plan.headroom)), cfg.plan.get("accelerate_config"))
    if how.config is None or how.processes < 2:
        return False
    argv = command(script, overrides, how)
    log.info("fine-tuning on every GPU: %s", how.describe())
    done = subprocess.run(argv, env=dict(os.environ))
    if done.returncode:
        raise RuntimeError(f"the training launch failed (exit {done.returncode}): {' '.join(argv)}")
    return True
