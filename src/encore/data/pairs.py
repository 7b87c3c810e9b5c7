"""Preference pairs: load from a hub id, a local file or the embedded demo set, normalised to one schema.

Schema (one row per pair): ``pair_id`` (stable: a hash of prompt, chosen and rejected), ``prompt`` (the conversation
up to the response, HH-RLHF ``Human:/Assistant:`` transcripts kept as text), ``chosen``, ``rejected`` and ``subset``
(the RewardBench subset, the source's harm category, or the dataset name).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import pandas as pd

from encore.cache.artifacts import content_hash
from encore.errors import DataError
from encore.data.sources import hub_table, read_table

log = logging.getLogger(__name__)

COLUMNS = ["pair_id", "prompt", "chosen", "rejected", "subset"]
HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"

# --------------------------------------------------------------------------------------------------- normalisation
def normalise(
    df: pd.DataFrame,
    *,
    source: str,
    prompt_field: str = "prompt",
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    subset_field: str | None = "subset",
    empty: str = "error",
    limit: int | None = None,
    keep: Iterable[str] = (),
) -> pd.DataFrame:
    """Map a raw table to the pair schema, check it, and give every pair a stable id.

    ``empty`` says what to do with a pair whose prompt, chosen or rejected text is empty: ``error`` (default) or
    ``drop`` (logged with a count). ``limit`` keeps the first N pairs, after checks. ``keep`` names further columns
    that ride along unchanged (the per-response labels of :mod:`encore.data.labels`).
    """
    keep = list(keep)
    fields = {"prompt": prompt_field, "chosen": chosen_field, "rejected": rejected_field}
    for role, field in fields.items():
        if field not in df.columns:
            raise DataError(
                f"{source}: missing column {field!r} (the {role} text); columns present: {sorted(map(str, df.columns))}. "
                f"Fix: point data.{role}_field at the right column."
            )
    if empty not in ("error", "drop"):
        raise DataError(f"{source}: data.empty={empty!r}; use 'error' or 'drop'")
    out = pd.DataFrame({role: df[field] for role, field in fields.items()})
    if subset_field and subset_field in df.columns:
        out["subset"] = df[subset_field].astype(str)
    else:
        out["subset"] = source
    for col in keep:
        out[col] = df[col].to_numpy()
    for role in fields:
        out[role] = out[role].map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    blank = (out[["prompt", "chosen", "rejected"]].apply(lambda col: col.str.strip() == "")).any(axis=1)
    if blank.any():
        rows = [int(i) for i in out.index[blank][:5]]
        if empty == "error":
            raise DataError(
                f"{source}: {int(blank.sum())} pair(s) have an empty prompt, chosen or rejected text (first rows: {rows}). "
                "Fix: clean the file, or set data.empty=drop to skip them (the count is logged)."
            )
        log.warning("%s: dropped %d pair(s) with an empty prompt or response (first rows: %s)", source, blank.sum(), rows)
        out = out[~blank]
    if len(out) == 0:
        raise DataError(f"{source}: no pairs left to use; check data.path / data.split / data.subsets")
    out = apply_limit(out.reset_index(drop=True), limit, source)
    report_suspicious(out, source)
    out.insert(0, "pair_id", _pair_ids(out))
    return out[COLUMNS + keep]


def apply_limit(pairs: pd.DataFrame, limit: int | None, source: str) -> pd.DataFrame:
    """The first ``limit`` pairs; ``None`` keeps all. Zero or a negative number is an error, never an empty or
    silently shortened table (``iloc[:-1]`` would drop the last pair)."""
    if limit is None:
        return pairs
    try:
        n = int(limit)
    except (TypeError, ValueError):
        raise DataError(f"{source}: data.limit={limit!r} is not a whole number; use a positive integer or null") from None
    if n < 1 or n != float(limit):
        raise DataError(f"{source}: data.limit={limit!r}: use a positive integer (the first N pairs) or null (all)")
    return pairs.iloc[:n].reset_index(drop=True)


def report_suspicious(pairs: pd.DataFrame, source: str) -> dict[str, int]:
    """Count, and warn about, pairs a user rarely means: exact duplicates (each occurrence counts again in every
    statistic) and chosen identical to rejected (every rule and reward model ties on them: a miss under
    study.ties=wrong). Returns the counts."""
    dup = int(pairs.duplicated(["prompt", "chosen", "rejected"]).sum())
    same = int((pairs["chosen"] == pairs["rejected"]).sum())
    if dup:
        log.warning("%s: %d duplicate pair(s) (same prompt, chosen and rejected); each occurrence is kept and counted. "
                    "Deduplicate the file if that is not meant", source, dup)
    if same:
        log.warning("%s: %d pair(s) with chosen identical to rejected; every rule and reward model ties on them "
                    "(a miss under study.ties=wrong). Remove them from the file if that is not meant", source, same)
    return {"duplicates": dup, "identical": same}


def _pair_ids(df: pd.DataFrame) -> list[str]:
    ids, seen = [], {}
    for p, c, r in zip(df["prompt"], df["chosen"], df["rejected"]):
        base = content_hash(p, c, r, length=16)
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}-{n}")  # exact duplicates stay distinct pairs
    return ids


def concat_pairs(parts: Any, source: str = "combined") -> pd.DataFrame:
    """Several pair tables as one (``data=hh_pku_combined``); each keeps its ``subset`` label and pair ids are
    re-derived so a pair present in two parts stays two pairs."""
    frames = list(parts.values()) if hasattr(parts, "values") else list(parts)
    if len(frames) < 1:
        raise DataError(f"{source}: data.parts is empty; give at least one dataset")
    out = pd.concat(frames, ignore_index=True).drop(columns="pair_id")
    out.insert(0, "pair_id", _pair_ids(out))
    return out[COLUMNS]


def fingerprint(pairs: pd.DataFrame) -> str:
    """Content hash of a pair table: changes when any pair, its order or its subset changes."""
    return content_hash(list(pairs["pair_id"]), list(pairs["subset"]))


def select_subsets(pairs: pd.DataFrame, subsets: Iterable[str] | None, *, source: str,
                   field: str = "data.subsets") -> pd.DataFrame:
    """Keep the named subsets; a name the data does not contain is an error, not an empty table."""
    if not subsets:
        return pairs
    subsets = list(subsets)
    present = set(pairs["subset"])
    missing = [s for s in subsets if s not in present]
    if missing:
        raise DataError(f"{source}: {field} names {missing}, which the data does not have; present: {sorted(present)}")
    return pairs[pairs["subset"].isin(subsets)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------- HH-RLHF format
def split_hh_transcript(text: str) -> tuple[str, str]:
    """Split an HH-RLHF transcript at its last ``Assistant:`` turn into (conversation so far, final response)."""
    i = text.rfind(HH_ASSISTANT)
    if i < 0:
        raise DataError(f"HH-RLHF transcript has no '{HH_ASSISTANT.strip()}' turn: {text[:80]!r}...")
    return text[:i].strip(), text[i + len(HH_ASSISTANT):].strip()


def hh_to_pairs(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Turn HH-RLHF ``chosen``/``rejected`` full transcripts into prompt/chosen/rejected columns."""
    for col in ("chosen", "rejected"):
        if col not in df.columns:
            raise DataError(f"{source}: HH-RLHF format needs a {col!r} column; present: {sorted(df.columns)}")
    rows, differ = [], 0
    for c_text, r_text in zip(df["chosen"], df["rejected"]):
        prompt, chosen = split_hh_transcript(str(c_text))
        r_prompt, rejected = split_hh_transcript(str(r_text))
        differ += r_prompt != prompt
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    if differ:
        log.info("%s: %d pair(s) whose rejected transcript has a different history; the chosen one's is used", source, differ)
    return pd.DataFrame(rows)


def to_messages(prompt: str) -> list[dict[str, str]]:
    """Parse an HH-style transcript into chat messages; a plain prompt becomes one user message."""
    text = prompt if prompt.startswith("\n\n") else "\n\n" + prompt
    if HH_HUMAN not in text:
        return [{"role": "user", "content": prompt.strip()}]
    messages = []
    for chunk in text.split(HH_HUMAN)[1:]:
        human, *assistant = chunk.split(HH_ASSISTANT)
        messages.append({"role": "user", "content": human.strip()})
        for turn in assistant:
            if turn.strip():
                messages.append({"role": "assistant", "content": turn.strip()})
    return messages


# --------------------------------------------------------------------------------------------------- loaders (_target_)
def load_pairs(
    path: str | None = None,
    hub_id: str | None = None,
    split: str = "train",
    name: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
    format: str = "pairs",
    prompt_field: str = "prompt",
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    subset_field: str | None = "subset",
    subsets: list[str] | None = None,
    empty: str = "error",
    limit: int | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Load pairs from a local file (``path``) or a hub dataset (``hub_id``); ``path`` wins when both are set.

    ``format``: ``pairs`` (prompt/chosen/rejected columns), ``hh`` (HH-RLHF transcripts in chosen/rejected).
    """
    if path:
        raw, where = read_table(path, hub_id=hub_id, text=[prompt_field, chosen_field, rejected_field,
                                                           subset_field or "subset"]), str(path)
    elif hub_id:
        raw, where = hub_table(hub_id, split, name, data_dir, revision), f"{hub_id}[{split}]"
    else:
        raise DataError("data: neither data.path nor data.hub_id is set. Fix: give one of them")
    source = source or where
    if format == "hh":
        extra = raw[[subset_field]] if subset_field and subset_field in raw.columns else None
        raw = hh_to_pairs(raw, source)
        if extra is not None:
            raw[subset_field] = extra[subset_field].to_numpy()
        prompt_field, chosen_field, rejected_field = "prompt", "chosen", "rejected"
    elif format != "pairs":
        raise DataError(f"data.format={format!r}; use 'pairs' or 'hh' (PKU-SafeRLHF has its own loader)")
    pairs = normalise(raw, source=source, prompt_field=prompt_field, chosen_field=chosen_field,
                      rejected_field=rejected_field, subset_field=subset_field, empty=empty)
    return apply_limit(select_subsets(pairs, subsets, source=source), limit, source)
