"""What runs, summaries, tables and figures call a set of pairs: its ``source`` (the option's own name, e.g.
``hh-rlhf-harmless``, ``demo (RewardBench layout)``), else its hub id, else its file's name; a user's own file
(``data=local``, ``eval=local``) is called by the file's name without its extensions (``mine/pairs.jsonl.gz`` ->
``pairs``), through the ``${encore_stem:path}`` resolver its config uses. Light on purpose: the runners import it
before Hydra resolves the run directory's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

TABLE_SUFFIXES = (".gz", ".jsonl", ".json", ".parquet", ".csv")


def file_stem(path: Any) -> str:
    """``mine/pairs.jsonl.gz`` -> ``pairs``: the file's name without the suffixes of a table file."""
    name = Path(str(path)).name
    while Path(name).suffix in TABLE_SUFFIXES and Path(name).stem:
        name = Path(name).stem
    return name


def _stem_of(key: str, _parent_: Any) -> str:
    """``${encore_stem:path}``: :func:`file_stem` of the sibling ``key``. While that is still unset (``???``) the
    name is ``local``, so the job starts and its settings check names the missing key (encore.run.settings)."""
    return "local" if OmegaConf.is_missing(_parent_, key) else file_stem(_parent_[key])


def set_name(node: Any) -> str:
    """The name of the pairs a data or eval option loads (see the module docstring); the embedded demo's training
    pairs, which name no source, are ``demo-train``."""
    for key in ("source", "hub_id"):
        if node.get(key):
            return str(node[key])
    if node.get("path"):
        return file_stem(node["path"])
    return f"demo-{node.get('split', 'train')}"


if not OmegaConf.has_resolver("encore_stem"):
    OmegaConf.register_new_resolver("encore_stem", _stem_of)
