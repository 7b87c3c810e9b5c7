"""The embedded zero-shot rater: a stand-in for the paper's LLM rater that runs offline on CPU.

It is NOT the paper's rater. For rule k it embeds the response and two descriptions, one of a response that follows
the rule (f_k) and one of a response that violates it (v_k), and maps the cosine margin through a logistic:

    ψ_k = σ((cos(e, f_k) - cos(e, v_k)) / T)

with e the MiniLM embedding of the response (optionally with the prompt) and T a temperature. ψ_k is in (0, 1).
It exists so that every stage runs for real without a GPU; point ``rater=hf`` or ``rater=openai`` at an LLM for the
paper's setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encore.rm.backbone import Encoder
from encore.scale.paths import EMBEDDED_MINILM
from encore.rules import Rule


@dataclass
class EmbeddingRater:
    model: str = EMBEDDED_MINILM
    temperature: float = 0.05
    with_prompt: bool = False
    max_length: int = 256
    batch_size: int = 64
    device: str = "auto"
    _enc: Any = field(default=None, init=False, repr=False)
    rule_fields = ("follows", "violates")  # what of a rule ``rate`` reads: the item key hashes these, not the text

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"rater.temperature={self.temperature}: must be > 0")

    def identity(self) -> dict[str, Any]:
        return {"kind": "embedding", "model": self.model, "temperature": self.temperature,
                "with_prompt": self.with_prompt, "max_length": self.max_length}

    @property
    def encoder(self) -> Encoder:
        if self._enc is None:
            self._enc = Encoder(self.model, pooling="mean", normalize=True, max_length=self.max_length,
                                batch_size=self.batch_size, device=self.device)
        return self._enc

    def arch_info(self) -> Any:
        return self.encoder.arch_info()

    def placement(self, gpus: Any, n_rules: int | None = None, seq_len: int | None = None, judge: bool = False) -> Any:
        """The MiniLM encoder's placement (it cannot judge; ``judge`` is accepted for a uniform interface)."""
        return self.encoder.placement(gpus)

    def unload(self) -> None:
        if self._enc is not None:
            self._enc.unload()

    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]:
        """(M,) prompts and responses -> ratings (M, K) in (0, 1) and reasons (M x K, all empty: never missing)."""
        for r in rules:
            if not (r.follows and r.violates):
                raise ValueError(f"rules: rule {r.name!r} needs 'follows' and 'violates' descriptions for rater=embedding")
        texts = [f"{p}\n{x}" if self.with_prompt else x for p, x in zip(prompts, responses)]
        e = self.encoder.encode(texts)  # (M, D), unit norm
        anchors = self.encoder.encode([r.follows for r in rules] + [r.violates for r in rules])  # (2K, D)
        k = len(rules)
        margin = e @ anchors[:k].T - e @ anchors[k:].T  # (M, K)
        ratings = 1.0 / (1.0 + np.exp(-margin / self.temperature))
        return ratings.astype(np.float64), [[""] * k for _ in range(len(texts))]
