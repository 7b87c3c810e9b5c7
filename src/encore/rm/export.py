"""Export a trained reward model (``python experiments/export.py``):

* ``export/multihead``: the K-head RM with ``save_pretrained`` (backbone, heads) and ``encore.json`` carrying the
  rules, their entropies and the composition weights; :meth:`encore.rm.model.MultiHeadRM.load` reads it back.
* ``export/composed``: φ = Σ_k w_k ψ_k folded into the score layer of an ``AutoModelForSequenceClassification``
  (num_labels = 1), which ``transformers`` loads without this package: score.weight = w @ W_heads (1, D).
  ``transformers`` pools the last non-pad token, so this needs a decoder backbone with last-token pooling. Heads
  with a bias b give a score φ - w·b (``config.encore_score_offset``), which leaves every comparison unchanged.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from encore.cache.artifacts import atomic_dir, write_json
from encore.rm.model import META, MultiHeadRM

log = logging.getLogger(__name__)


def export_composed(rm: MultiHeadRM, weights: np.ndarray, tokenizer: Any, path: str | Path,
                    **meta: Any) -> tuple[Path, float]:
    """Write the single-score model for weights (K,) to ``path`` (atomically); return it and its score offset."""
    from transformers import AutoModelForSequenceClassification

    if rm.pooling != "last":
        raise ValueError(f"export: the backbone pools with {rm.pooling!r}, but transformers' sequence classifiers "
                         "pool the last token (decoders). Fix: export a decoder reward model (model.pooling=last), or "
                         "use the multi-head directory with encore.rm.model.MultiHeadRM.load")
    if tokenizer.pad_token_id is None:
        raise ValueError("export: the tokenizer has no pad token; set one so transformers can find the last token")
    w = torch.tensor(np.asarray(weights, dtype=np.float64))
    if w.shape != (rm.num_heads,):
        raise ValueError(f"export: weights have shape {tuple(w.shape)}, the model has {rm.num_heads} heads")
    backbone = rm.backbone.merge_and_unload() if hasattr(rm.backbone, "merge_and_unload") else rm.backbone
    cfg = copy.deepcopy(backbone.config)
    cfg.num_labels, cfg.pad_token_id = 1, tokenizer.pad_token_id
    cfg.id2label, cfg.label2id = {0: "reward"}, {"reward": 0}
    offset = float(w @ rm.heads.bias.detach().double().cpu()) if rm.heads.bias is not None else 0.0
    cfg.encore_score_offset = offset  # exported score = φ - offset
    model = AutoModelForSequenceClassification.from_config(cfg).to(next(backbone.parameters()).dtype)
    getattr(model, model.base_model_prefix).load_state_dict(backbone.state_dict())
    with torch.no_grad():
        model.score.weight.copy_((w @ rm.heads.weight.detach().double().cpu())[None].to(model.score.weight.dtype))
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / META, {"composed": True, "weights": w.tolist(), "score_offset": offset, **meta})
    return Path(path), offset


def stage_export(rm: MultiHeadRM, tokenizer: Any, method: str, weights_wide: pd.DataFrame, rule_stats: pd.DataFrame,
                 rules: list[dict[str, str]], extra_meta: dict[str, Any], out: Path) -> dict[str, Any]:
    """Both exports for the weights of ``method`` (a row of weights.csv; the pipeline checks it is one before any
    stage runs); returns a report for metrics.json."""
    w = weights_wide.set_index("method").loc[method, [r["name"] for r in rules]].to_numpy(float)
    meta = {"rules": rules, "entropy": rule_stats["entropy"].tolist(), "accuracy": rule_stats["accuracy"].tolist(),
            "method": method, **extra_meta}
    multihead = rm.save_pretrained(out / "multihead", tokenizer, weights=w.tolist(), **meta)
    report: dict[str, Any] = {"method": method, "multihead": str(multihead)}
    if rm.pooling == "last":
        path, report["score_offset"] = export_composed(rm, w, tokenizer, out / "composed", **meta)
        report["composed"] = str(path)
    else:
        report["composed"] = None
        report["composed_skipped"] = (f"{rm.pooling} pooling has no transformers sequence-classification equivalent; "
                                      "the multi-head directory carries the composition weights instead")
        log.warning("export: %s", report["composed_skipped"])
    return report
