"""The multi-head reward model as a torch module: one backbone, K linear heads on its pooled representation, so one
forward pass scores all K rules. Plus the two training losses and ``save_pretrained`` / ``load``.

Heads mirror the score layer of ``*ForSequenceClassification``: bias-free on decoders (last-token pooling), so the
composed head folds into that layer exactly (see :mod:`encore.rm.export`). A saved model records the size and SHA-256
of each of its files (``checksums.json``); :func:`reusable` checks them before a cached model is used again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encore.cache.artifacts import atomic_dir, read_json, write_json
from encore.cache import integrity
from encore.cache.integrity import SUMS, checksums, set_aside
from encore.rm.backbone import pool

log = logging.getLogger(__name__)
META = "encore.json"


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over rated entries of (pred - ψ)²; NaN targets (missing ratings) contribute neither loss nor gradient."""
    mask = ~torch.isnan(target)
    err = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return (err ** 2).sum() / mask.sum().clamp(min=1)


def bt_pair_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry: mean -log σ(r_chosen - r_rejected)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class MultiHeadRM(nn.Module):
    """backbone (any ``AutoModel``) → pooled (B, D) → heads → (B, K)."""

    def __init__(self, backbone: nn.Module, num_heads: int, pooling: str, bias: bool):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        if hasattr(backbone.config, "use_cache"):
            backbone.config.use_cache = False  # scoring and training never reuse a KV cache
        self.heads = nn.Linear(backbone.config.hidden_size, num_heads, bias=bias)
        nn.init.normal_(self.heads.weight, std=1.0 / backbone.config.hidden_size ** 0.5)
        if bias:
            nn.init.zeros_(self.heads.bias)

    @property
    def num_heads(self) -> int:
        return self.heads.out_features

    base_model_prefix = "backbone"  # where accelerate's FSDP2 looks for the final norm to shard with the tail

    def get_input_embeddings(self) -> nn.Module:
        """The backbone's token embedding: FSDP2 preparation in accelerate shards it as its own unit (without it the
        whole matrix stays in the root unit, gathered for the entire step)."""
        return self.backbone.get_input_embeddings()

    def get_output_embeddings(self) -> None:
        """None: the K heads replace a language-model head, so no output embedding is tied to the input one."""
        return None

    @property
    def _no_split_modules(self) -> Any:
        """The backbone's repeated layer classes: what FSDP's transformer auto-wrap shards one unit at a time."""
        return getattr(self.backbone, "_no_split_modules", None)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled representation (B, D): what the heads read."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, D)
        return pool(hidden, attention_mask, self.pooling).to(self.heads.weight.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.heads(self.pooled(input_ids, attention_mask))  # (B, K)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path, tokenizer: Any = None, state_dict: dict | None = None,
                        files: dict[str, bytes] | None = None, **meta: Any) -> Path:
        """``path/backbone`` (``save_pretrained``; a LoRA adapter is merged first), ``path/heads.pt``, and
        ``path/encore.json`` with the pooling, the heads and whatever ``meta`` carries (rules, entropies, weights).
        ``state_dict``: the full weights gathered from a sharded run (FSDP / ZeRO-3), whose own modules hold shards.
        ``files``: more files to save beside them (the training log), listed in ``checksums.json`` like the rest.
        Written to a temporary sibling and renamed, so a killed save never leaves half a model."""
        backbone = self.backbone.merge_and_unload() if hasattr(self.backbone, "merge_and_unload") else self.backbone
        parts: dict[str, dict] = {"backbone": {}, "heads": {}}
        for k, v in (state_dict or {}).items():
            top, _, rest = k.partition(".")
            parts.setdefault(top, {})[rest] = v
        with atomic_dir(path) as tmp:
            backbone.save_pretrained(tmp / "backbone", **({"state_dict": parts["backbone"]} if state_dict else {}))
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp / "backbone")
            heads = parts["heads"] if state_dict else self.heads.state_dict()
            torch.save({k: v.detach().cpu() for k, v in heads.items()}, tmp / "heads.pt")
            write_json(tmp / META, {"num_heads": self.num_heads, "pooling": self.pooling,
                                    "bias": self.heads.bias is not None, **meta})
            for name, data in (files or {}).items():
                (tmp / name).write_bytes(data)
            write_json(tmp / SUMS, {"files": checksums(tmp, skip=(SUMS,))})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype | None = None) -> "MultiHeadRM":
        from transformers import AutoModel

        path = Path(path)
        meta = json.loads((path / META).read_text())
        backbone = AutoModel.from_pretrained(path / "backbone", dtype=dtype)
        rm = cls(backbone, meta["num_heads"], meta["pooling"], meta["bias"])
        rm.heads.load_state_dict(torch.load(path / "heads.pt", weights_only=True))
        return rm.eval()


@torch.inference_mode()
def score_ids(rm: MultiHeadRM, tok: Any, ids: list[list[int]], batch_size: int = 16, pooled: bool = False) -> np.ndarray:
    """Token-id lists (unpadded) -> (M, K) float64 head scores in eval mode, or with ``pooled`` the (M, D) pooled
    backbone states the heads read. Batches are formed by length so padding stays small; the output keeps the input
    order."""
    was, dev = rm.training, rm.heads.weight.device
    rm.eval()
    fn = rm.pooled if pooled else rm
    order = np.argsort([-len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), rm.heads.in_features if pooled else rm.num_heads))
    for s in range(0, len(ids), batch_size):
        idx = order[s: s + batch_size]
        batch = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(dev)
        out[idx] = fn(batch["input_ids"], batch["attention_mask"]).double().cpu().numpy()
    rm.train(was)
    return out
def from_linear_heads(backbone: nn.Module, W: np.ndarray, b: np.ndarray | None, pooling: str) -> MultiHeadRM:
    """A :class:`MultiHeadRM` from a frozen backbone and fitted linear heads W (D, K), b (K,) (``train=probe``)."""
    rm = MultiHeadRM(backbone, W.shape[1], pooling, bias=b is not None)
    with torch.no_grad():
        rm.heads.weight.copy_(torch.as_tensor(W.T, dtype=rm.heads.weight.dtype))
        if b is not None:
            rm.heads.bias.copy_(torch.as_tensor(b, dtype=rm.heads.bias.dtype))
    return rm.to(next(backbone.parameters()).device).eval()


def damage(path: Path, hashes: dict[str, str] | None = None) -> str | None:
    """What is wrong with the saved model at ``path`` (None: every file has its recorded size and checksum, and no
    file is unlisted). A deleted ``checksums.json`` or one that lost an entry is damage; a model saved before models
    carried checksums is reused only with ``ENCORE_REUSE_UNVERIFIED=1`` (logged)."""
    return integrity.damage(path, SUMS, hashes)


def weights_id(path: Path) -> str:
    """The verified identity of the saved model at ``path`` (checked by :func:`reusable` or just saved): the digest
    of its checksum list. What the cache keys of its scores record, so a model trained again after damage never
    reads the scores of the damaged one."""
    files, _ = integrity.recorded(path, SUMS, quiet=True)
    return f"sha256:{integrity.digest(files)[:16]}" if files else "unverified"


def reusable(path: Path) -> bool:
    """Collective under a launcher (every rank calls it): the ranks hash the cached model's files between them
    (:func:`encore.scale.distributed.shared_hashes`), the main process checks them (:func:`damage`) and every rank
    gets the answer; a damaged one is set aside as ``<key>.damaged-<token>`` with a warning, so the caller trains
    it again."""
    from accelerate import PartialState

    from encore.scale.distributed import shared_hashes

    state = PartialState()
    hashes = shared_hashes(state, path, integrity.recorded(path, SUMS, quiet=True)[0]) \
        if state.num_processes > 1 else None
    wrong = [damage(path, hashes) if state.is_main_process else None]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(wrong)
    if wrong[0] is None:
        return True
    if state.is_main_process:
        aside = set_aside(path)
        log.warning("cached model %s is damaged (%s): set aside as %s; training it again", path, wrong[0],
                    aside.name if aside else "(already moved)")
    state.wait_for_everyone()
    return False
