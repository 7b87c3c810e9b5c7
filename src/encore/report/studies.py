"""What a run is, so that figures and tables tell runs apart by it and never pick one silently.

Two runs belong to one *study* when they rated the same training data (name and number of pairs) with the same
rater (its cache key, else its name) and the same rules: their rule statistics, correlation and ratings are the
same study's. They give the same *results* when, on top of that, the backbone, the trainer and the evaluation set
(its fingerprint) are the same: a τ sweep's jobs are one result, a 6-pair pilot and a 30-pair study on one dataset
are two. Every figure and table is drawn per study or result, each titled with its data, rater and pairs.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable

STUDY = ("dataset", "train_pairs", "rater", "rules")  # what the ratings and the entropy study depend on
RESULT = (*STUDY, "backbone", "train", "eval_fingerprint")  # what the heads, weights and evaluation depend on


def _rater(meta: dict) -> str:
    setup = meta.get("setup") or {}
    return str(meta.get("rater_key") or setup.get("rater") or "")


def _value(meta: dict, field: str) -> str:
    setup = meta.get("setup") or {}
    if field == "rater":
        return _rater(meta)
    if field in ("backbone", "train"):
        return str(setup.get(field) or "")
    if field == "rules":
        rules = meta.get("rules") or []
        return hashlib.sha256("\n".join(sorted(map(str, rules))).encode()).hexdigest()[:12] if rules else ""
    return str(meta.get(field) if meta.get(field) is not None else "")


def study_key(meta: dict) -> str:
    """The study a run belongs to (:data:`STUDY`), as one readable string."""
    return "|".join(f"{f}={_value(meta, f)}" for f in STUDY)


def result_key(meta: dict) -> str:
    """The results a run belongs to (:data:`RESULT`), as one readable string."""
    return "|".join(f"{f}={_value(meta, f)}" for f in RESULT)


def short(name: Any) -> str:
    """A model by the last part of its hub id, path or ``kind:name`` ("embedded:all-MiniLM-L6-v2" ->
    "all-MiniLM-L6-v2"); a ratings source keeps its own words."""
    text = str(name or "")
    return text if " " in text else re.split(r"[/:]", text.rstrip("/"))[-1]


def _pairs(n: Any) -> str:
    try:
        return f"{int(n):,} pairs"
    except (TypeError, ValueError):
        return "? pairs"


def about_study(meta: dict, dataset_name: str) -> str:
    """The data, its number of pairs and the rater: "Demo, 103 pairs, rater all-MiniLM-L6-v2"."""
    rater = short((meta.get("setup") or {}).get("rater")) or "unknown"
    return f"{dataset_name}, {_pairs(meta.get('train_pairs'))}, rater {rater}"


def about_result(meta: dict, dataset_name: str) -> str:
    """The evaluation set and its pairs, then the study and the backbone that scored it."""
    setup = meta.get("setup") or {}
    eval_set = meta.get("eval_set") or setup.get("eval") or "RewardBench"
    backbone = short(setup.get("backbone"))
    return (f"evaluated on {eval_set}, {_pairs(meta.get('eval_pairs'))}; trained on {about_study(meta, dataset_name)}"
            + (f"; backbone {backbone}" if backbone else ""))


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-")[:60]


def suffixes(metas: Iterable[tuple[str, dict]], key: str = "study", named: bool = False) -> dict[str, str]:
    """A file-name suffix per study (or result) key: "" when there is only one (unless ``named``); else what tells
    each apart, the dataset first, then its number of pairs, rater (and backbone), then a short hash
    ("_demo-train-6pairs-all-MiniLM-L6-v2")."""
    metas = list(dict(metas).items())
    if len(metas) <= 1 and not named:
        return {k: "" for k, _ in metas}
    out = {}
    for k, m in metas:
        rater = short((m.get("setup") or {}).get("rater"))
        parts = [str(m.get("dataset")), f"{m.get('train_pairs')}pairs", rater]
        if key == "result":
            parts.append(short((m.get("setup") or {}).get("backbone")))
        out[k] = parts
    for depth in range(1, 5):
        names = {k: slug("-".join(p for p in v[:depth] if p)) for k, v in out.items()}
        if len(set(names.values())) == len(names):
            return {k: f"_{v}" for k, v in names.items()}
    return {k: f"_{slug('-'.join(v))[:48]}-{hashlib.sha256(k.encode()).hexdigest()[:6]}" for k, v in out.items()}
