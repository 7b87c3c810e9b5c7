"""ENCORE: entropy-guided reward composition for multi-head safety reward models (Li et al., AAAI 2026).

The top floor holds the paper's ideas and the vocabulary every floor shares; the machinery sits in its rooms
(``docs/reference.md``, "Layout"). Modules that once stood at the top and moved down keep their old dotted paths
for ``_target_`` and attribute access (Hydra locates ``encore.tracking.WandbTracker`` through ``getattr``), with a
warning that names the new path; ``import encore.<old>`` itself does not work.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

MOVED = {  # old top-level module -> where it lives now
    "artifacts": "encore.cache.artifacts", "cache_only": "encore.cache.cache_only",
    "pipeline": "encore.run.pipeline", "main_table": "encore.run.main_table", "study": "encore.run.study",
    "job": "encore.run.job", "run_dirs": "encore.run.run_dirs", "summary": "encore.run.summary",
    "settings": "encore.run.settings", "tracking": "encore.run.tracking",
    "plan": "encore.node.plan", "plan_costs": "encore.node.plan_costs", "replicas": "encore.node.replicas",
    "gpu_check": "encore.node.gpu_check",
}


def __getattr__(name: str) -> Any:
    if name in MOVED:
        warnings.warn(f"encore.{name} moved to {MOVED[name]}: use that path", DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[name])
    raise AttributeError(f"module 'encore' has no attribute {name!r}")
