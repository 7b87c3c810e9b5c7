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
    """``study.*``, ``rating.*`` and ``stats.*``: types and ranges (data settings are checked by the loaders, which
    also run before anything is written)."""
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
    _int(ss.n_boot, "stats.n_boot", 0)
    _int(ss.n_perm, "stats.n_perm", 0)
