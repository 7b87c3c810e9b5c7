"""Rule ratings ψ_k in [0, 1] for every (pair, side, rule), from any rater, cached and resumable.

A rater is any object with ``identity() -> dict`` (what determines its ratings; hashed into the cache key) and
``rate(prompts, responses, rules) -> (values (M, K), reasons M x K)``, where a missing rating is NaN with a non-empty
reason. Raters are built from ``conf/rater/*.yaml`` with ``_target_``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from encore.cache.artifacts import content_hash
from encore.rating.shards import (MissingShards, Slicing, assign, canonical_chunks, latest_record, slice_key,
                                  write_record)
from encore.rating.others import OtherRatings, check_others, record_identity
from encore.rating.store import TRANSIENT, RatingStore, item_key
from encore.rules import Rule

__all__ = ["MissingShards", "NotRated", "OtherRatings", "TooManyMissing", "Rater", "RaterUnavailable", "Ratings",
           "Slicing", "rate_pairs", "rater_key", "rule_input"]
log = logging.getLogger(__name__)
_LENGTH = re.compile(r" \(\d+ > \d+ tokens\)")
SIDES = ("chosen", "rejected")


class NotRated(RuntimeError):
    """Ratings a stage needs but may not compute itself (training ranks under ``accelerate launch``)."""

    def __init__(self, n: int, command: str = "python experiments/rate.py <your overrides>"):
        self.n = n
        super().__init__(f"{n} rating(s) are not in the cache, and the ranks of a multi-process (accelerate launch) "
                         f"run never rate: a 70B rater would load on one rank's GPU. Rate first, in one process or "
                         f"in shards: {command} (or slurm/rate_vllm_server.sbatch), then launch training again")


class Rater(Protocol):
    def identity(self) -> dict[str, Any]: ...

    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]: ...


@dataclass
class Ratings:
    """Ratings of N pairs under K rules: ``values`` (N, 2, K) with side 0 = chosen, 1 = rejected; NaN = missing."""

    pair_ids: list[str]
    rules: list[str]
    values: np.ndarray
    reasons: np.ndarray  # (N, 2, K) object: "" or why the rating is missing

    @property
    def chosen(self) -> np.ndarray:
        return self.values[:, 0]

    @property
    def rejected(self) -> np.ndarray:
        return self.values[:, 1]

    @property
    def n_missing(self) -> int:
        return int(np.isnan(self.values).sum())

    def missing_by_reason(self) -> dict[str, int]:
        """Missing ratings counted by reason; a too-long prompt's length is left out of its reason, so they form
        one count rather than one per length."""
        return self.count(self.reasons[self.reasons != ""])

    @staticmethod
    def count(reasons: Any) -> dict[str, int]:
        r = [_LENGTH.sub("", str(x)) for x in reasons]
        if not r:
            return {}
        keys, counts = np.unique(r, return_counts=True)
        return {str(k): int(c) for k, c in zip(keys, counts)}

    def tidy(self) -> pd.DataFrame:
        """Long table: pair_id, side, rule, value, reason."""
        n, _, k = self.values.shape
        return pd.DataFrame({
            "pair_id": np.repeat(self.pair_ids, 2 * k),
            "side": np.tile(np.repeat(SIDES, k), n),
            "rule": np.tile(self.rules, 2 * n),
            "value": self.values.reshape(-1),
            "reason": self.reasons.reshape(-1),
        })


def rater_key(rater: Rater) -> str:
    # Cache-key audit (rating store): <rater_key>/ = hash of rater.identity(); each row's item = hash of prompt,
    # response, rule_input(rule). Every identity() says what it covers and what it leaves out:
    #   hf: model, revision (as typed: pin a commit for an exact key), tokenizer, config+seed (random weights), mode,
    #       scale_max, system_prompt, max_length, dtype (auto as typed), RULE_TEMPLATE. Not: batch_size,
    #       prefix_reuse, device, device_map, max_memory, offload_folder (same numbers), the files behind a local
    #       path (an edited model directory under the same path is not detected).
    #   vllm: as hf, plus engine_kwargs except ENGINE_SPEED_ONLY. Not: tensor_parallel_size, memory, seed.
    #   openai: model, mode, scale_max, system_prompt, RULE_TEMPLATE, top_logprobs or (vllm_extensions) tokenizer and
    #       max_length, extra_body, the server when not on localhost. Not: a local port, the key, transport settings.
    #   embedding: model, temperature, with_prompt, max_length; rules by follows/violates (rule_fields). Not: device.
    #   Code constants (the question texts, label forms) are not in any key: editing them is a code change.
    # Tested input by input in tests/test_cache_keys.py.
    return content_hash(rater.identity())


def rule_input(rater: Rater, rule: Rule) -> str:
    """The part of ``rule`` the rater reads, as it enters the item key: the rule's ``text`` for LLM raters (which
    fill the text into their prompt), a hash of every field a rater names in ``rule_fields`` otherwise (the
    embedded rater reads ``follows`` and ``violates``, never ``text``)."""
    fields = tuple(getattr(rater, "rule_fields", ("text",)))
    if fields == ("text",):
        return rule.text
    return content_hash({f: getattr(rule, f) for f in fields}, length=20)


def rule_collisions(rater: Rater, rules: list[Rule]) -> list[list[str]]:
    """Groups of rules that the rater reads identically: they share every rating (one cache entry per response),
    so their heads and columns are copies of each other."""
    by: dict[str, list[str]] = {}
    for r in rules:
        by.setdefault(rule_input(rater, r), []).append(r.name)
    return [names for names in by.values() if len(names) > 1]


def rate_pairs(pairs: pd.DataFrame, rules: list[Rule], rater: Rater, cache_dir: str | Path, chunk_size: int = 256,
               retry_missing: bool = False, progress: bool = True,
               slicing: Slicing | None = None, cached_only: bool = False,
               max_missing_share: float = 1.0, other_raters: str = "warn",
               overrides: list[str] | None = None) -> tuple[Ratings | None, dict[str, Any]]:
    """Rate both sides of every pair under every rule, reusing and extending the store at ``cache_dir``.

    Identical (prompt, response) texts are rated once. Work goes in canonical chunks of ``chunk_size`` responses
    (see :mod:`encore.rating.shards`), each saved as a shard of the store as soon as it completes. ``retry_missing``
    re-asks ratings stored as missing. With ``slicing`` only that shard's chunks are rated and no table is returned
    (the job leaves a record instead); without it, missing ratings of texts that shard jobs own stop the run with
    :class:`MissingShards`. ``cached_only``: anything left to rate is an error (:class:`NotRated`) instead of a
    rater load. Failures with a transient reason (server unreachable, overloaded) are missing for this run but never
    cached. More than ``max_missing_share`` of the ratings missing (or all of them) is a :class:`TooManyMissing`
    naming the reasons and the fixes. Before any rating (or :class:`NotRated`), the other raters' stores in
    ``cache_dir`` are searched for the pending ratings (:mod:`encore.rating.others`): ``other_raters="stop"`` makes
    finding them an :class:`OtherRatings` naming the override that uses them, ``"warn"`` / ``"rate"`` a warning.
    ``overrides``: the command-line overrides that chose this rater, recorded beside its store. Returns the ratings and a report (cached, new and missing counts, throughput).
    """
    store = RatingStore(cache_dir, rater_key(rater))
    table = store.load()
    parts = [rule_input(rater, rule) for rule in rules]
    collisions = rule_collisions(rater, rules)
    if collisions:
        log.warning("rules %s are read identically by this rater (same %s): each group shares one rating per "
                    "response, so its columns are copies. Fix: give each rule its own wording", collisions,
                    "/".join(getattr(rater, "rule_fields", ("text",))))
    texts: dict[tuple[str, str], list[str]] = {}  # (prompt, response) -> item keys per rule
    for prompt, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]):
        for resp in (c, r):
            if (prompt, resp) not in texts:
                texts[(prompt, resp)] = [item_key(prompt, resp, part) for part in parts]
    uniq = list(texts)
    hashes = [content_hash(p, x, length=20) for p, x in uniq]
    lengths = [len(p) + len(x) for p, x in uniq]
    key = slice_key(hashes, parts)

    def todo(k: str) -> bool:
        return k not in table or (retry_missing and table[k][1] != "")

    def pending(chunk: list[int]) -> list[int]:
        return [i for i in chunk if any(todo(k) for k in texts[uniq[i]])]

    chunks = canonical_chunks(lengths, hashes, chunk_size)
    if slicing is None:
        mine, rec = chunks, latest_record(store.dir, key)
        if rec is not None:  # shard jobs own these texts: name the ones still missing rather than rate them here
            own = canonical_chunks(lengths, hashes, rec["chunk_size"])
            owner = assign(own, lengths, rec["num_shards"])
            missing = sorted({s for s, chunk in zip(owner, own) if pending(chunk)})
            if missing:
                n = sum(len(pending(chunk)) for s, chunk in zip(owner, own) if s in missing)
                raise MissingShards(missing, rec["num_shards"], n)
    else:
        owner = assign(chunks, lengths, slicing.num_shards)
        mine = [chunk for s, chunk in zip(owner, chunks) if s == slicing.shard]
    work = [w for w in (pending(chunk) for chunk in mine) if w]
    if work:
        keys = [k for chunk in work for i in chunk for k in texts[uniq[i]] if todo(k)]
        check_others(Path(cache_dir), store.dir.name, keys, len(keys), rater, other_raters)
    if work and cached_only:
        raise NotRated(sum(map(len, work)) * len(rules))
    if work:
        record_identity(store.dir, rater.identity(), overrides)
    n_cached = sum(not todo(k) for chunk in mine for i in chunk for k in texts[uniq[i]])
    n_new, t0 = 0, time.perf_counter()
    transient: dict[str, str] = {}
    bar = tqdm(total=sum(map(len, work)) * len(rules), desc="rate", unit="rating", disable=not progress or not work)
    gone: RaterUnavailable | None = None
    for chunk in work:
        try:
            values, reasons = rater.rate([uniq[i][0] for i in chunk], [uniq[i][1] for i in chunk], rules)
        except RaterUnavailable as e:  # what was answered is stored below; then the run stops
            gone, values, reasons = e, e.values, e.reasons
        values = np.asarray(values, float)
        if values.shape != (len(chunk), len(rules)):
            raise RuntimeError(f"rater returned shape {values.shape}; expected {(len(chunk), len(rules))}")
        bad = ~np.isnan(values) & ((values < 0) | (values > 1))
        if bad.any():
            raise RuntimeError(f"rater returned ratings outside [0, 1], e.g. {values[bad][:3].tolist()}")
        items, names, vals, why = [], [], [], []
        for i, row, rrow in zip(chunk, values, reasons):
            for rule, k, v, reason in zip(rules, texts[uniq[i]], row, rrow):
                if np.isnan(v) and not reason:
                    reason = "rater returned no value"
                if not todo(k):  # cached already (a partly rated text is asked again whole): kept, not counted
                    continue
                if reason.startswith(TRANSIENT):  # this run's gap, not the rating: asked again next run
                    transient[k] = reason
                    continue
                items.append(k); names.append(rule.name); vals.append(v); why.append(reason)
        if items:
            store.write_shard(items, names, vals, why)
        n_new += len(items)
        bar.update(len(items))
        bar.set_postfix(rate=f"{n_new / max(time.perf_counter() - t0, 1e-9):.0f}/s")
        if gone is not None:
            break
    bar.close()
    if gone is not None:
        total = sum(map(len, mine)) * len(rules)
        left = total - n_cached - n_new
        raise TooManyMissing(f"{gone}. The run stopped: {left} of {total} ratings ({left / total:.0%}) are missing; "
                             f"{n_new} new rating(s) of this run are stored beside {n_cached} from the cache. Fix: "
                             "check rater.base_url and the server, then run the same command again (what is stored "
                             "is kept; only the missing ratings are asked)")
    elapsed = time.perf_counter() - t0
    report = {"rater_key": store.dir.name, "n_pairs": len(pairs), "n_rules": len(rules), "n_cached": n_cached,
              "n_new": n_new, "seconds": elapsed, "ratings_per_s": n_new / elapsed if n_new else None,
              "shards": store.n_shards(), **({"rule_collisions": collisions} if collisions else {})}
    if transient:
        log.warning("%d rating(s) failed transiently (%s); not cached: a rerun asks for them again",
                    len(transient), sorted(set(transient.values()))[:3])
    report["n_transient"] = len(transient)
    if slicing is not None:
        check_missing(len(transient), sum(map(len, mine)) * len(rules), Ratings.count(transient.values()),
                      max_missing_share)
        write_record(store.dir, key, slicing, chunk_size, len(mine), n_new)
        report.update(slice={"num_shards": slicing.num_shards, "shard": slicing.shard, "chunks": len(mine),
                             "responses": sum(map(len, mine))})
        return None, report

    n, k = len(pairs), len(rules)
    values = np.full((n, 2, k), np.nan)
    reasons = np.full((n, 2, k), "", dtype=object)
    for i, (prompt, c, r) in enumerate(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])):
        for side, resp in enumerate((c, r)):
            for j, ik in enumerate(texts[(prompt, resp)]):
                values[i, side, j], reasons[i, side, j] = table[ik] if ik in table else (np.nan, transient[ik])
    ratings = Ratings(list(pairs["pair_id"]), [r.name for r in rules], values, reasons)
    report.update(n_missing=ratings.n_missing, missing_by_reason=ratings.missing_by_reason())
    if ratings.n_missing:
        log.warning("%d rating(s) missing: %s. Ratings stored as missing are reused; rating.retry_missing=true asks "
                    "for them again", ratings.n_missing, report["missing_by_reason"])
    check_missing(ratings.n_missing, values.size, report["missing_by_reason"], max_missing_share)
    return ratings, report


class TooManyMissing(RuntimeError):
    """More ratings missing than a study can stand on."""


class RaterUnavailable(TooManyMissing):
    """A rater that can answer no more (every server of ``rater.base_url`` is down): ``values`` and ``reasons`` are
    what ``rate`` would have returned, the unanswered ratings missing with a ``transient:`` reason, so the caller
    keeps what was answered before it stops. Raised out of a judge, it ends the run with its message alone (a
    :class:`TooManyMissing`)."""

    def __init__(self, message: str, values: Any, reasons: Any):
        super().__init__(message)
        self.values, self.reasons = values, reasons


def check_missing(n_missing: int, n_total: int, by_reason: dict[str, int], max_share: float,
                  given: bool = False) -> None:
    """Stop when all ratings, or more than ``max_share`` of them, are missing: the reasons and what fixes each.
    ``given``: the ratings come from labels or a file (:mod:`encore.rating.given`), which no rerun fills."""
    if not n_total or (n_missing < n_total and n_missing <= max_share * n_total):
        return
    fixes = ["the ratings source lacks them: complete its labels or file, or choose data it rates"] if given else []
    if any(r.startswith(TRANSIENT) for r in by_reason):
        fixes.append("the rater's server failed or was unreachable: check rater.base_url and the server, then run "
                     "again (transient failures are not cached, a rerun asks again)")
    if any("rater.max_length" in r for r in by_reason):
        fixes.append("prompts exceed rater.max_length: raise it, if the model's context allows")
    if not given and any(not r.startswith(TRANSIENT) for r in by_reason):
        fixes.append("missing ratings stored by an earlier run are reused: add rating.retry_missing=true to ask again")
    fixes.append(f"to accept this many, raise rating.max_missing_share (now {max_share})")
    raise TooManyMissing(f"{n_missing} of {n_total} ratings ({n_missing / n_total:.0%}) are missing: "
                         f"{dict(sorted(by_reason.items(), key=lambda kv: -kv[1])[:5])}. Fix: " + "; ".join(fixes))
