"""A faithful re-creation of the naive rating loop (one prompt per forward pass, batch size 1, no cache reuse),
kept as the reference that the fast :class:`~encore.rating.hf.HFRater` must match and beat (tests, benchmark)."""

from __future__ import annotations

import numpy as np
import torch

from encore.scale.placement import input_device
from encore.rating import prompts as P
from encore.rating.hf import HFRater
from encore.rules import Rule


@torch.inference_mode()
def naive_rate(rater: HFRater, prompts: list[str], responses: list[str], rules: list[Rule],
               full_logits: bool = True) -> np.ndarray:
    """``full_logits=False`` is an ablation (the loop, but logits at the last position only), not the naive loop."""
    rater.load()
    dev = input_device(rater._model)
    out = np.full((len(responses), len(rules)), np.nan)
    for i, (p, x) in enumerate(zip(prompts, responses)):
        for k, rule in enumerate(rules):
            ids = rater.prompts.encode(P.rule_messages(p, x, rule.text, rater.mode, rater.scale_max, rater.system_prompt))
            keep = {} if full_logits else {"logits_to_keep": 1}
            logits = rater._model(input_ids=torch.tensor([ids], device=dev), **keep).logits[:, -1]
            out[i, k] = P.rating_from_probs(rater._option_probs(logits)[0], rater.mode)
    return out
