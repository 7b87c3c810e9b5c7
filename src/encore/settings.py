"""Run settings checked before any stage reads data or writes a file: a wrong value stops the run at once with the
field and the fix, instead of after an hour of rating."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from encore.entropy import TIES


class SettingError(ValueError):
    """A setting that cannot work; the message names the field, its value and the fix."""


def _int(value: Any, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingError(f"{field}={value!r}: use a whole number >= {low}")
    try:
        n = int(value)
    except ValueError:
        raise SettingError(f"{field}={value!r}: use a whole number >= {low}") from None
    if n != float(value) or n < low:
        raise SettingError(f"{field}={value!r}: use a whole number >= {low}")
    return n


def check_settings(cfg: DictConfig) -> None:
    """Every mandatory value (``???``: ``data.path`` of data=local, ``rater.path`` of rater=file) is given; then
    ``study.*``, ``rating.*`` and ``stats.*``: types and ranges (data settings are checked by the loaders, which
    also run before anything is written)."""
    from omegaconf import OmegaConf

    missing = sorted(k for key in cfg if key != "hydra"  # hydra's own ??? (job.num) are filled by Hydra in a job
                     for k in ([key] if OmegaConf.is_missing(cfg, key) else
                               OmegaConf.missing_keys(cfg[key]) if OmegaConf.is_dict(cfg[key]) else []))
    if missing:
        raise SettingError(f"{', '.join(missing)}: not set (???). Fix: add {missing[0]}=<value> to the command (for a "
                           "file: its path; --help lists the runner's settings), or choose another option of its group")
    st, rt, ss = cfg.study, cfg.rating, cfg.stats
    _int(st.bins, "study.bins", 2)
    if st.ties not in TIES:
        raise SettingError(f"study.ties={st.ties!r}: use one of {list(TIES)}")
    if str(st.log_base) != "e":
        try:
            ok = float(st.log_base) > 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SettingError(f"study.log_base={st.log_base!r}: use e (nats), 2 (bits) or another number > 1")
    _int(rt.chunk_size, "rating.chunk_size", 1)
    share = rt.get("max_missing_share", 1.0)
    if not isinstance(share, int | float) or not 0 <= share <= 1:
        raise SettingError(f"rating.max_missing_share={share!r}: use a share in [0, 1] (1 accepts any)")
    if rt.get("other_raters", "stop") not in ("stop", "rate"):
        raise SettingError(f"rating.other_raters={rt.other_raters!r}: use stop (name another rater's cached ratings "
                           "of these pairs and stop) or rate (rate anew with this rater)")
    _int(ss.n_boot, "stats.n_boot", 1)
    _int(ss.n_perm, "stats.n_perm", 0)


def check_fields(node: Any, cls: type, prefix: str) -> None:
    """Every field of ``node`` that the dataclass ``cls`` declares as ``int``, ``float`` or ``bool`` holds a value
    of that kind (``2.5`` or ``abc`` for a count is an error here, not a TypeError after files were written); the
    error names the key as the user types it, ``<prefix>.<field>``."""
    import dataclasses
    import math
    import typing

    if not dataclasses.is_dataclass(cls):
        return
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in node or node[f.name] is None:
            continue
        v, kind, field = node[f.name], hints.get(f.name), f"{prefix}.{f.name}"
        if kind is bool and not isinstance(v, bool):
            raise SettingError(f"{field}={v!r}: use true or false")
        if kind is int and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                            or v != int(v)):
            raise SettingError(f"{field}={v!r}: use a whole number")
        if kind is float and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
            raise SettingError(f"{field}={v!r}: use a finite number")
