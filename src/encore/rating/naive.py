"""A faithful re-creation of the naive rating loop (one prompt per forward pass, batch size 1, no cache reuse),
kept as the reference that the fast :class:`~encore.rating.hf.HFRater` must match and beat (tests, benchmark).

Its arithmetic is its own: it shares the prompt ids and the label token ids with the fast rater (their derivation
has its own tests), never the code that turns logits into a rating, so a slip there shows as a mismatch:
    p = softmax(logits) over the whole vocabulary, in float64;
    yes_no: ψ = P(Yes) / (P(Yes) + P(No)), each summed over its label tokens ("Yes", " Yes", "yes", ...);
            with ``rater.normalise=false``, ψ = P(Yes);
    scale:  ψ = (Σ_d d q_d - 1) / (N - 1) with q_d = P(d) / Σ_e P(e) over the digits 1..N.
"""

from __future__ import annotations

import numpy as np
import torch

from encore.scale.placement import input_device
from encore import prompts as P
from encore.rating.hf import HFRater
from encore.rules import Rule


def rating_from_logits(logits: np.ndarray, options: list[list[int]], mode: str, normalise: bool = True) -> float:
    """(V,) next-token logits -> ψ, written out as the module docstring states."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    mass = np.array([p[ids].sum() for ids in options])
    if mode == "yes_no":
        return float(mass[0]) if not normalise else float(mass[0] / (mass[0] + mass[1]))
    q = mass / mass.sum()
    return float((np.arange(1, len(q) + 1) @ q - 1) / (len(q) - 1))


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
            logits = rater._model(input_ids=torch.tensor([ids], device=dev), **keep).logits[0, -1]
            out[i, k] = rating_from_logits(logits.float().cpu().numpy(), rater._options, rater.mode, rater.normalise)
    return out
