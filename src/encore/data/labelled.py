"""Preference datasets that ship per-response labels, loaded as pairs plus their label columns (:mod:`encore.data.labels`).

- PKU-SafeRLHF: chosen = ``safer_response_id`` (or ``better_response_id``); labels ``is_safe``, ``severity_level``
  and the 19 ``harm_category.<Category>`` flags of the v1 release, exactly as the hub serves them.
- HelpSteer2: the HelpSteer2-Preference pairs (``preference/preference.jsonl.gz``) with the five 0-4 attribute
  scores of each response (``train`` / ``validation`` files), joined on (prompt, response).
- UltraFeedback: pairs formed as its binarised release forms them; labels are each completion's four aspect ratings.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from encore.cache.artifacts import content_hash
from encore.data.pairs import normalise
from encore.errors import DataError
from encore.data.labels import carried, label_table
from encore.data.sources import hub_table, read_table

log = logging.getLogger(__name__)

PKU_HARM_CATEGORIES = (
    "Endangering National Security", "Insulting Behavior", "Discriminatory Behavior", "Endangering Public Health",
    "Copyright Issues", "Violence", "Drugs", "Privacy Violation", "Economic Crime", "Mental Manipulation",
    "Human Trafficking", "Physical Harm", "Sexual Content", "Cybercrime", "Disrupting Public Order",
    "Environmental Damage", "Psychological Harm", "White-Collar Crime", "Animal Abuse",
)
HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ULTRAFEEDBACK_ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")


def _require(raw: pd.DataFrame, cols: Sequence[str], source: str, what: str) -> None:
    for col in cols:
        if col not in raw.columns:
            raise DataError(f"{source}: {what} needs column {col!r}; present: {sorted(map(str, raw.columns))}")


# --------------------------------------------------------------------------------------------------- PKU-SafeRLHF
def _harm(value: Any, category: str) -> Any:
    """One category's flag from a ``response_k_harm_category`` cell: a dict as the hub serves it (a JSON string
    when a CSV copy flattened it); a row without the dict, or without the category, is missing."""
    if isinstance(value, str):
        value = json.loads(value)
    return value.get(category, np.nan) if isinstance(value, dict) else np.nan


def load_pku_saferlhf(
    hub_id: str = "PKU-Alignment/PKU-SafeRLHF",
    split: str = "train",
    path: str | None = None,
    name: str | None = None,
    revision: str | None = None,
    preference: str = "safer",
    empty: str = "error",
    limit: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """PKU-SafeRLHF: ``response_0/1`` with ``safer_response_id`` (``preference=safer``) or ``better_response_id``.
    ``source`` names the dataset in messages (and the run); the pairs' subset label stays ``pku-saferlhf``.
    Whatever per-response labels the file has ride along, oriented by the preference (``rater=pku_harm19``)."""
    key = {"safer": "safer_response_id", "better": "better_response_id"}.get(preference)
    if key is None:
        raise DataError(f"data.preference={preference!r}; use 'safer' or 'better'")
    raw = (read_table(path, hub_id=hub_id, text=("prompt", "response_0", "response_1")) if path
           else hub_table(hub_id, split, name, None, revision))
    source = source or (str(path) if path else f"{hub_id}[{split}]")
    _require(raw, ("prompt", "response_0", "response_1", key), source, "PKU-SafeRLHF")
    ids = pd.to_numeric(raw[key], errors="coerce")
    bad = ~ids.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: row {i}: column {key!r} = {raw[key].iloc[i]!r}; it must be 0 or 1 (which "
                        f"response is preferred). {int(bad.sum())} row(s) are like this")
    pick = ids.to_numpy().astype(int)

    def sides(get: Callable[[int], Sequence[Any]]) -> tuple[list, list]:
        r0, r1 = list(get(0)), list(get(1))
        return [a if p == 0 else b for a, b, p in zip(r0, r1, pick)], [b if p == 0 else a for a, b, p in zip(r0, r1, pick)]

    labels: dict[str, tuple[list, list]] = {}
    for label in ("is_safe", "severity_level"):
        cols = ("is_response_0_safe", "is_response_1_safe") if label == "is_safe" else (
            "response_0_severity_level", "response_1_severity_level")
        if all(c in raw.columns for c in cols):
            labels[label] = sides(lambda k: raw[cols[k]])
    if "response_0_harm_category" in raw.columns and "response_1_harm_category" in raw.columns:
        for cat in PKU_HARM_CATEGORIES:
            labels[f"harm_category.{cat}"] = sides(lambda k: [_harm(v, cat) for v in raw[f"response_{k}_harm_category"]])
    chosen, rejected = sides(lambda k: raw[f"response_{k}"])
    table = label_table(raw["prompt"], chosen, rejected, range(len(raw)), labels,
                        ([f"response_{p}_" for p in pick], [f"response_{1 - p}_" for p in pick]), "pku-saferlhf")
    return normalise(table, source=source, empty=empty, limit=limit, keep=carried(table))


# --------------------------------------------------------------------------------------------------- HelpSteer2
def load_helpsteer2(
    hub_id: str = "nvidia/HelpSteer2",
    split: str = "train",
    path: str | None = None,
    preference_path: str | None = None,
    revision: str | None = None,
    empty: str = "drop",
    limit: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """HelpSteer2-Preference pairs with HelpSteer2's attribute scores. ``preference_strength`` runs from -3
    (response_1 much better) to 3 (response_2 much better); 0 (about the same) gives no pair and is dropped with a
    count. ``split`` picks the attribute file and the preference rows whose ``split`` column matches it (``train``;
    ``validation`` also matches ``val``). Local copies: ``path`` (attributes) and ``preference_path``."""
    if path and not preference_path:
        raise DataError("data.preference_path is not set, but data.path is: HelpSteer2's pairs are in the hub "
                        "dataset's preference/preference.jsonl.gz. Fix: give a local copy with data.preference_path=..., "
                        "or set data.path=null to read both files from the hub")
    attrs = (read_table(path, hub_id=hub_id, text=("prompt", "response")) if path
             else hub_table(hub_id, split, None, None, revision))
    prefs = (read_table(preference_path, "data.preference_path", text=("prompt", "response_1", "response_2", "split"))
             if preference_path
             else hub_table(hub_id, "train", None, "preference", revision))
    source = source or (str(path) if path else f"{hub_id}[{split}]")
    _require(attrs, ("prompt", "response", *HELPSTEER2_ATTRIBUTES), source, "HelpSteer2's attribute file")
    _require(prefs, ("prompt", "response_1", "response_2", "preference_strength"), str(preference_path or hub_id),
             "HelpSteer2's preference file")
    if "split" in prefs.columns:
        wanted = {split} | ({"val", "validation"} if split in ("val", "validation") else set())
        present = sorted(map(str, prefs["split"].unique()))
        prefs = prefs[prefs["split"].astype(str).isin(wanted)]
        if prefs.empty:
            raise DataError(f"{source}: no preference row has split {split!r}; present: {present}. Fix: data.split")
    strength = pd.to_numeric(prefs["preference_strength"], errors="coerce")
    if strength.isna().any() or (strength.abs() > 3).any():
        i = prefs.index[strength.isna() | (strength.abs() > 3)][0]
        raise DataError(f"{source}: preference row {i}: preference_strength = {prefs.loc[i, 'preference_strength']!r};"
                        " HelpSteer2-Preference uses integers from -3 to 3")
    tie = (strength == 0).to_numpy()
    if tie.any():
        log.info("%s: %d preference row(s) rate both responses about the same (strength 0); they give no pair and "
                 "are dropped", source, int(tie.sum()))
    prefs, two = prefs[~tie], (strength[~tie] > 0).to_numpy()  # response_2 preferred
    index: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(attrs["prompt"], attrs["response"])):
        index.setdefault(key, i)
    if len(index) < len(attrs):
        log.warning("%s: %d attribute row(s) repeat a (prompt, response) already rated; the first is used", source,
                    len(attrs) - len(index))
    r1, r2, prompts = list(prefs["response_1"]), list(prefs["response_2"]), list(prefs["prompt"])
    chosen = [b if t else a for a, b, t in zip(r1, r2, two)]
    rejected = [a if t else b for a, b, t in zip(r1, r2, two)]
    rows_c = [index.get((p, x), -1) for p, x in zip(prompts, chosen)]
    rows_r = [index.get((p, x), -1) for p, x in zip(prompts, rejected)]
    unmatched = sum(r < 0 for r in rows_c + rows_r)
    if unmatched:
        log.warning("%s: %d response(s) of the preference pairs have no attribute row; their labels are missing",
                    source, unmatched)
    col = {a: attrs[a].to_numpy() for a in HELPSTEER2_ATTRIBUTES}
    labels = {a: ([col[a][r] if r >= 0 else np.nan for r in rows_c], [col[a][r] if r >= 0 else np.nan for r in rows_r])
              for a in HELPSTEER2_ATTRIBUTES}
    where = ([f"response_{2 if t else 1}." for t in two], [f"response_{1 if t else 2}." for t in two])
    table = label_table(prompts, chosen, rejected, prefs.index, labels, where, "helpsteer2")
    return normalise(table, source=source, empty=empty, limit=limit, keep=carried(table))


# --------------------------------------------------------------------------------------------------- UltraFeedback
def _aspect(completion: Any, aspect: str) -> Any:
    """``completion.annotations.<aspect>.Rating`` (a string "1".."5" or "N/A"); None when absent."""
    note = (completion.get("annotations") or {}).get(aspect) if isinstance(completion, dict) else None
    if isinstance(note, (list, tuple, np.ndarray)) and len(note) == 1:
        note = note[0]
    return note.get("Rating") if isinstance(note, dict) else None


def load_ultrafeedback(
    hub_id: str = "openbmb/UltraFeedback",
    split: str = "train",
    path: str | None = None,
    revision: str | None = None,
    seed: int = 0,
    empty: str = "drop",
    limit: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """UltraFeedback's completions as pairs, the way its binarised release forms them: completions with an "N/A" or
    absent aspect rating are left out; of the rest, chosen = the highest ``overall_score`` (the first on a tie),
    rejected = one of the others drawn at random (seeded by ``seed`` and the instruction, so independent of row
    order); an instruction with fewer than two rated completions gives no pair (counted). Labels: the four aspect
    ratings, ``annotations.<aspect>.Rating``."""
    raw = (read_table(path, hub_id=hub_id, text=("instruction",)) if path
           else hub_table(hub_id, split, None, None, revision))
    source = source or (str(path) if path else f"{hub_id}[{split}]")
    _require(raw, ("instruction", "completions"), source, "UltraFeedback")
    names = [f"annotations.{a}.Rating" for a in ULTRAFEEDBACK_ASPECTS]
    prompts, chosen, rejected, rows, where = [], [], [], [], ([], [])
    labels: dict[str, tuple[list, list]] = {n: ([], []) for n in names}
    skipped = 0
    for i, (instruction, comps) in enumerate(zip(raw["instruction"], raw["completions"])):
        comps = [] if comps is None or (isinstance(comps, float) and np.isnan(comps)) else list(comps)
        rated = [j for j, c in enumerate(comps)
                 if all(_aspect(c, a) not in (None, "", "N/A") for a in ULTRAFEEDBACK_ASPECTS)]
        if len(rated) < 2:
            skipped += 1
            continue
        try:
            scores = [float(comps[j]["overall_score"]) for j in rated]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{source}: row {i}: a completion has no numeric 'overall_score'; UltraFeedback's "
                            "binarisation picks the chosen completion by it") from None
        best = rated[int(np.argmax(scores))]
        others = [j for j in rated if j != best]
        rng = np.random.default_rng(int(content_hash(seed, str(instruction), length=12), 16))
        worse = others[int(rng.integers(len(others)))]
        prompts.append(instruction), rows.append(i)
        for side, j in enumerate((best, worse)):
            (chosen, rejected)[side].append(comps[j]["response"])
            where[side].append(f"completions[{j}].")
            for n, a in zip(names, ULTRAFEEDBACK_ASPECTS):
                labels[n][side].append(_aspect(comps[j], a))
    if skipped:
        log.info("%s: %d instruction(s) have fewer than two completions with all four aspect ratings; no pair",
                 source, skipped)
    if not prompts:
        raise DataError(f"{source}: no instruction has two completions with all four aspect ratings; no pairs")
    table = label_table(prompts, chosen, rejected, rows, labels, where, "ultrafeedback")
    return normalise(table, source=source, empty=empty, limit=limit, keep=carried(table))
