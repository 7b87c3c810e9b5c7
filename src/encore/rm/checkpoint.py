"""Resumable training checkpoints that a kill at any moment leaves consistent.

Layout under ``root``: one directory per saved step (``step-00000040/``: accelerate's ``save_state`` output, whatever
the strategy wrote — full, sharded FSDP or DeepSpeed files — plus ``encore_state.json`` with the micro-step and the
loss log), and a pointer file ``LATEST`` naming the newest complete one. Every rank writes into ``step-N.tmp``; after
a barrier the main process renames it to ``step-N`` and only then replaces ``LATEST`` (atomically), then deletes
older steps. A kill before the rename leaves a ``.tmp`` that nothing reads; a kill between the rename and the pointer
resumes from the previous step, whose weights, optimiser and step count belong together.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from encore.artifacts import read_json, write_bytes, write_json

log = logging.getLogger(__name__)
POINTER = "LATEST"
STATE = "encore_state.json"


def step_dir(root: Path, micro_step: int) -> Path:
    return root / f"step-{micro_step:08d}"


def save(acc: Any, root: Path, micro_step: int, logs: list[dict]) -> Path:
    """Collective: every rank must call it. Returns the directory ``LATEST`` now names."""
    final = step_dir(root, micro_step)
    tmp = final.with_name(final.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    acc.wait_for_everyone()
    if acc.is_main_process:
        write_json(tmp / STATE, {"micro_step": micro_step, "log": logs})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        write_bytes(root / POINTER, final.name.encode())
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def latest(root: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint and its state, or None. A pointer to a directory that is gone or lacks its
    state file (a hand-deleted or foreign directory) is reported and ignored: training starts over rather than
    resuming from something inconsistent."""
    pointer = root / POINTER
    if not pointer.exists():
        return None
    d = root / pointer.read_text().strip()
    if not (d / STATE).exists():
        log.warning("checkpoint pointer %s names %s, which is incomplete: starting from scratch", pointer, d.name)
        return None
    return d, read_json(d / STATE)
