"""The kind of value a runner's numeric settings take, checked when the job starts: ``plan.mfu=abc`` or
``n_pairs=2.5`` stops with the key, the value and what to type, not with ``float()``'s traceback from deep inside
the plan or the GPU check. (The pipeline's own settings are checked by :mod:`encore.run.settings`.)"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from encore.errors import SettingError, shown

NUMBER, WHOLE, SHARE, FLAG = "a number >= 0", "a whole number >= 0", "a share in [0, 1]", "true or false"

PLAN = {"plan.headroom": (SHARE, False), "plan.mfu": (SHARE, False), "plan.sample": (WHOLE, True),
        "plan.peak_tflops": (NUMBER, True)}
GPU_CHECK = {"n_pairs": (WHOLE, False), "train_steps": (WHOLE, False), "peak_tflops": (NUMBER, True),
             "vllm": (FLAG, False), "vllm_memory": (SHARE, False), "tolerance.bf16": (NUMBER, False),
             "tolerance.vllm": (NUMBER, False), **{f"size.{k}": (WHOLE, True) for k in (
                 "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim")}}


def fits(value: Any, kind: str) -> bool:
    """Whether ``value`` (as Hydra parsed it: ``2`` an int, ``abc`` a string) is of ``kind``."""
    if kind == FLAG:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    if kind == WHOLE:
        return value == int(value) and value >= 0
    if kind == SHARE:
        return 0 <= value <= 1
    return value >= 0


def check_kinds(cfg: DictConfig, kinds: dict[str, tuple[str, bool]]) -> None:
    """Each key of ``kinds`` that ``cfg`` has holds a value of its kind (or null where the bool says null is
    allowed); the first that does not raises :class:`SettingError` naming it."""
    for key, (kind, nullable) in kinds.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or leaf not in node:
            continue
        value = node[leaf]
        if (value is None and nullable) or fits(value, kind):
            continue
        raise SettingError(f"{key}={shown(value)}: use {kind}{' or null' if nullable else ''}")
