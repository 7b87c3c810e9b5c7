"""Run settings checked before any stage reads data or writes a file: a wrong value stops the run at once with the
field and the fix, instead of after an hour of rating."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from encore.entropy import TIES
from encore.errors import SettingError
from encore.stats import min_replicates

MIN_PERM = 19  # 1 / (19 + 1) = 0.05


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
    check_judge_prompt(cfg)
    rater = cfg.get("rater") or {}
    if rater.get("normalise", True) is not True and rater.get("_target_") != "encore.rating.hf.HFRater":
        raise SettingError(f"rater.normalise={rater.normalise}: the raw full-vocabulary P(Yes) is read by rater=hf "
                           "only. vLLM (rater=vllm, vllm_server) returns label log-probabilities after the "
                           "allowed-token mask, where only their ratio, P(Yes) / (P(Yes) + P(No)), is exact, and a "
                           "chat server's top log-probabilities may miss a label; use rater=hf or leave "
                           "rater.normalise unset")
    check_replicas(rt.get("replicas", "auto"))
    _int(rt.chunk_size, "rating.chunk_size", 1)
    share = rt.get("max_missing_share", 1.0)
    if not isinstance(share, int | float) or not 0 <= share <= 1:
        raise SettingError(f"rating.max_missing_share={share!r}: use a share in [0, 1] (1 accepts any)")
    if rt.get("other_raters", "stop") not in ("stop", "rate"):
        raise SettingError(f"rating.other_raters={rt.other_raters!r}: use stop (name another rater's cached ratings "
                           "of these pairs and stop) or rate (rate anew with this rater)")
    # the fewest replicates a 95% percentile interval and a p-value below 0.05 need (encore.stats' docstring)
    n_boot = _int(ss.n_boot, "stats.n_boot", 1)
    if n_boot < min_replicates(0.95):
        raise SettingError(f"stats.n_boot={n_boot}: a 95% percentile interval needs at least {min_replicates(0.95)} "
                           "bootstrap replicates (each 2.5% tail must hold one); use stats.n_boot=1000 (the default) "
                           f"or at least {min_replicates(0.95)}")
    n_perm = _int(ss.n_perm, "stats.n_perm", 0)
    if n_perm < MIN_PERM:
        raise SettingError(f"stats.n_perm={n_perm}: with n sign flips the smallest p-value is 1/(n + 1), so fewer "
                           f"than {MIN_PERM} can never reach 0.05; use stats.n_perm=10000 (the default) or at least "
                           f"{MIN_PERM}")


def check_replicas(value: Any) -> None:
    """``rating.replicas``: ``auto`` or a whole number of rater copies >= 1 (``1.5`` would run as 1)."""
    if value in (None, "auto"):
        return
    whole = (isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
             or isinstance(value, str) and value.strip().isdigit())
    if not whole or float(value) < 1:
        raise SettingError(f"rating.replicas={value!r}: use auto (as many rater copies as fit the visible GPUs) or a "
                           "whole number of copies >= 1, e.g. rating.replicas=1")


def _method_nodes(method: Any) -> list[tuple[str, Any]]:
    """(key as typed, node) for ``method`` (one method) or each method of a mapping (``method=all``)."""
    if "_target_" in method:
        return [("method", method)]
    return [(f"method.{k}", m) for k, m in method.items() if hasattr(m, "get")]


def check_judge_prompt(cfg: DictConfig) -> None:
    """An LLM judge with another prompt than the default (RewardBench's, answered after the prefix "[[": see
    encore.prompts) needs a rater that takes token-id prompts: a chat-completions rater cannot put the prefix
    in the assistant's mouth."""
    rater = cfg.get("rater") or {}
    chat = rater.get("_target_") == "encore.rating.remote.OpenAIRater" and not rater.get("vllm_extensions", False)
    for key, node in _method_nodes(cfg.get("method") or {}):
        if node.get("_target_") == "encore.judge.LLMJudge" and chat and str(node.get("prompt", "encore")) != "encore":
            raise SettingError(f"{key}.prompt={node.prompt}: its answer is read after a prefix (\"[[\"), which a "
                               "chat-completions rater (rater=openai) cannot supply; use rater=hf, rater=vllm or "
                               "rater=vllm_server, or the default prompt")


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
