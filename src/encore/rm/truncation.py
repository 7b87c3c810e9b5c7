"""Keeping the response when a text is too long for the backbone.

A reward model judges the response, which comes last: cutting the right end (the tokenizer's default) cuts the
response away first, and long conversations then score their chosen and rejected sides as identical ties. Here a
text over ``max_length`` tokens keeps its leading special tokens (BOS, the chat template's opening) and its last
tokens, so the earliest turns of the conversation are what is dropped. The rater does not truncate at all: a prompt
too long for it is a missing rating with its length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def keep_end(ids: list[int], max_length: int, special: set[int]) -> tuple[list[int], bool]:
    """``ids`` cut to ``max_length``: the leading run of special tokens (at most half the budget), then the last
    tokens. Returns the ids and whether anything was cut."""
    if len(ids) <= max_length:
        return list(ids), False
    k = 0
    while k < len(ids) and k < max_length // 2 and ids[k] in special:
        k += 1
    return list(ids[:k]) + list(ids[len(ids) - (max_length - k):]), True


def truncation_report(encoder: Any, pairs: Any, cache_dir: str | Path) -> dict[str, int]:
    """How many of a pair table's texts the backbone shortens, how many pairs that touches, and how many pairs end
    up token-identical (a tie every head scores as a miss); cached like the embeddings, so a τ sweep pays nothing."""
    from encore.cache.artifacts import content_hash, read_json, write_json
    from encore.data.pairs import fingerprint

    # Cache-key audit: the report reads the encoder's tokenizer and max_length (identity) and the texts
    # (fingerprint). A JSON report, recomputed cheaply; it carries no checksum.
    path = Path(cache_dir) / "truncation" / f"{content_hash(encoder.identity(), fingerprint(pairs))}.json"
    if path.exists():
        return read_json(path)
    ids, cut = encoder.token_ids(encoder.pair_texts(pairs))
    cut = np.asarray(cut).reshape(-1, 2)
    same = sum(a == b for a, b in zip(ids[0::2], ids[1::2]))
    raw_same = int((pairs["chosen"].str.strip() == pairs["rejected"].str.strip()).sum())
    report = {"max_length": encoder.max_length, "texts_truncated": int(cut.sum()),
              "pairs_truncated": int(cut.any(axis=1).sum()), "pairs_token_identical": int(same),
              "pairs_identical_in_the_data": raw_same}
    write_json(path, report)
    return report
