"""``rater=file``: ratings produced anywhere else (a vLLM batch job, a provider's batch API, another lab's grader,
an earlier run's ``ratings.parquet``), read from a tidy file. No model runs.

One row per (pair, side, rule) or (prompt, response, rule): ``rule``, ``value`` in [0, 1] (empty = missing),
optional ``reason``, and either ``pair_id`` + ``side`` (``chosen`` / ``rejected``; pair ids are content hashes of
prompt, chosen and rejected, see :mod:`encore.data.pairs`) or ``prompt`` + ``response`` texts. Parquet, CSV or JSONL.
Pairs are matched by content, never by row order. Data pairs the file does not rate are missing ratings (reported;
the run's ``rating.max_missing_share`` decides); a rule set that differs from the file's rules is an error.
"""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encore.errors import DataError, shown
from encore.rating.engine import SIDES, Ratings
from encore.rules import Rule
from encore.data.sources import read_table

log = logging.getLogger(__name__)
TEXT = ("pair_id", "side", "rule", "reason", "prompt", "response")  # read as strings: a response "42" stays "42"


class FileRater:
    def __init__(self, path: str, name: str | None = None):
        self.path = str(Path(path).expanduser())
        self.name = name or Path(self.path).name

    def _read(self, rules: list[Rule]) -> tuple[pd.DataFrame, list[str]]:
        """The file's rows, checked, with ``value`` as float and ``reason`` as text; and the key columns."""
        df = read_table(self.path, "rater.path", text=TEXT)
        field = f"rater.path={self.path!r}"
        if {"pair_id", "side"} <= set(df.columns):
            key = ["pair_id", "side", "rule"]
        elif {"prompt", "response"} <= set(df.columns):
            key = ["prompt", "response", "rule"]
        else:
            key = []
        if not key or not {"rule", "value"} <= set(df.columns):
            raise DataError(f"{field}: columns {sorted(map(str, df.columns))}; a ratings file needs rule and value, "
                            "plus pair_id and side, or prompt and response (optional: reason). Fix: rename the "
                            "columns (a run's own ratings.parquet has this layout)")
        df = df.reset_index(drop=True)
        raw = df["value"]
        flag = raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(bool)  # JSON true/false: not a rating
        value = pd.to_numeric(raw.where(~flag, None), errors="coerce")
        empty = (raw.isna() | raw.astype(str).str.strip().str.lower().isin(["", "nan", "n/a", "none", "null"])) & ~flag
        bad = flag | (value.isna() & ~empty) | (value < 0) | (value > 1)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{field}: row {i}: value = {shown(raw.iloc[i])} (rule {df['rule'].iloc[i]!r}) is not a "
                            f"rating in [0, 1]; {int(bad.sum())} row(s) are like this. Fix: map the ratings into "
                            "[0, 1] before writing the file")
        if "side" in key:
            wrong = ~df["side"].isin(SIDES)
            if wrong.any():
                i = int(np.flatnonzero(wrong.to_numpy())[0])
                raise DataError(f"{field}: row {i}: side = {df['side'].iloc[i]!r}; use 'chosen' or 'rejected'")
        if "prompt" in key:  # texts match after Unicode NFC and with surrounding whitespace stripped
            df = df.assign(prompt=df["prompt"].map(_text), response=df["response"].map(_text))
        df = df.assign(value=value.astype(float), rule=df["rule"].astype(str),
                       reason=df["reason"].fillna("").astype(str) if "reason" in df.columns else "")
        names = [r.name for r in rules]
        extra, lacking = sorted(set(df["rule"]) - set(names)), [n for n in names if n not in set(df["rule"])]
        if extra or lacking:
            raise DataError(f"{field}: its rules and the rule set differ: in the file only {extra}, in the rule set "
                            f"only {lacking}. Fix: choose the rule set the file was rated under (rules=...), or "
                            "filter the file to the rule set's rules")
        firsts = df.drop_duplicates(key + ["value", "reason"])
        clash = firsts.duplicated(key, keep=False)
        if clash.any():
            rows = firsts.index[clash][:4].tolist()
            raise DataError(f"{field}: rows {rows} rate the same {'/'.join(key)} with different values or reasons; "
                            f"{int(clash.sum())} row(s) conflict. Fix: keep one rating per {', '.join(key)}")
        if len(firsts) < len(df):
            log.warning("%s: %d duplicate row(s) repeat a rating exactly; each is used once", field,
                        len(df) - len(firsts))
        return firsts, key

    def given(self, pairs: pd.DataFrame, rules: list[Rule]) -> tuple[Ratings, dict[str, Any]]:
        """The (N, 2, K) ratings of ``pairs`` found in the file; what it lacks is missing, with its reason."""
        df, key = self._read(rules)
        n, k = len(pairs), len(rules)
        grid = pd.DataFrame({"i": np.repeat(np.arange(n), 2 * k), "s": np.tile(np.repeat([0, 1], k), n),
                             "j": np.tile(np.arange(k), 2 * n), "rule": np.tile([r.name for r in rules], 2 * n)})
        if key[0] == "pair_id":
            grid["pair_id"] = np.repeat(pairs["pair_id"].to_numpy(), 2 * k)
            grid["side"] = np.asarray(SIDES)[grid["s"].to_numpy()]
        else:
            grid["prompt"] = np.repeat(pairs["prompt"].map(_text).to_numpy(), 2 * k)
            texts = np.stack([pairs["chosen"].map(_text).to_numpy(), pairs["rejected"].map(_text).to_numpy()], 1)
            grid["response"] = texts[grid["i"].to_numpy(), grid["s"].to_numpy()]  # (N, 2) texts, one per row
        hit = grid.merge(df[key + ["value", "reason"]].assign(found=True), on=key, how="left")
        found = hit["found"].fillna(False).to_numpy(bool)
        if not found.any():
            by = "pair id (a hash of prompt, chosen and rejected)" if key[0] == "pair_id" else "prompt and response text"
            raise DataError(f"rater.path={self.path!r}: none of its {len(df)} rating(s) match a pair of the data "
                            f"({n} pairs). Pairs are matched by {by}: was the file rated on other data, or on a "
                            "different data.limit / data.path?")
        at = (hit["i"].to_numpy(), hit["s"].to_numpy(), hit["j"].to_numpy())
        values, reasons = np.full((n, 2, k), np.nan), np.full((n, 2, k), "", dtype=object)
        values[at] = hit["value"].to_numpy(float)
        why = np.where(found, hit["reason"].fillna("").to_numpy(object), f"not in ratings file {self.name}")
        why = np.where(found & np.isnan(hit["value"].to_numpy(float)) & (why == ""), "no value in ratings file", why)
        reasons[at] = why
        rated = found.reshape(n, 2 * k).any(axis=1)
        unused = int((df[key].merge(grid[key], on=key, how="left", indicator=True)["_merge"] == "left_only").sum())
        if not rated.all():
            log.warning("rater.path: %d of %d data pair(s) have no rating in the file; their ratings are missing%s",
                        int((~rated).sum()), n, _likely_cause(grid[~found], df, key) if (~rated).mean() > 0.05 else "")
        if unused:
            log.warning("rater.path: %d rating(s) in the file match no pair of the data; they are not used", unused)
        report = {"source": f"ratings file {self.name}", "file_rows": len(df),
                  "pairs_without_ratings": int((~rated).sum()), "file_ratings_unused": unused}
        return Ratings(list(pairs["pair_id"]), [r.name for r in rules], values, reasons), report


def _text(x: Any) -> Any:
    """A text as it is matched: Unicode NFC (composed accents), surrounding whitespace stripped."""
    return unicodedata.normalize("NFC", x).strip() if isinstance(x, str) else x


def _loose(x: Any) -> str:
    return " ".join(str(x).split()).casefold()


def _likely_cause(unmatched: pd.DataFrame, df: pd.DataFrame, key: list[str]) -> str:
    """Why many data texts found no rating: what a looser match (inner whitespace, case) would have found, or the
    usual cause (other data)."""
    if key[0] == "prompt":
        have = set(zip(df["prompt"].map(_loose), df["response"].map(_loose)))
        close = sum((a, b) in have for a, b in zip(unmatched["prompt"].map(_loose), unmatched["response"].map(_loose)))
        if close:
            return (f". {close} of the {len(unmatched)} unmatched text row(s) match when inner whitespace and case are "
                    "ignored: the file's texts were reformatted (matching is exact after Unicode NFC and stripping "
                    "surrounding whitespace). Fix: write the file from the same data texts")
        return (". Likely cause: the file was rated on other texts (another data.path, data.limit or preprocessing); "
                "texts are matched after Unicode NFC and stripping surrounding whitespace")
    return (". Likely cause: the file was rated on other pairs (pair ids are content hashes of prompt, chosen and "
            "rejected: any edit to a text changes them); rate the file by prompt and response texts instead")
