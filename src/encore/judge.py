"""LLM-as-a-judge baseline (``method=llm_judge``): the judge sees the conversation and both responses and we read
P(A) vs P(B) from its next-token distribution. Each pair is judged in both orders and averaged (position-bias
control):  P(chosen) = ½ [P(A | chosen shown as A) + P(B | chosen shown as B)].  The reward of chosen is P(chosen)
and of rejected 1 - P(chosen). ``position_agreement`` is the share of pairs where both orders prefer the same
response. Judgements are cached by (judge identity, judge prompt and labels, evaluation data fingerprint).

Scored as RewardBench scores its generative judges (scripts/run_generative.py: a verdict for chosen 1, for rejected
0, anything else "effectively a tie", 0.5): P(chosen) > ½ counts 1, < ½ counts 0, and exactly ½ counts ½, as does a
pair with no judgement in either order. A judge that answers "A" whatever it is shown gives P(chosen) = ½ on every
pair and scores 50%, as it would in expectation under RewardBench's random order (reward models, which RewardBench
scores strictly, count a tie as a miss: :func:`encore.evaluate.pair_correct`).

A judge that cannot be told from a coin or that prefers a position is marked (:meth:`LLMJudge.flags`, the run's
``judge_flags``, the summary) and never bolded as best: **near chance** when its mean |P(chosen) - ½| is under
``CHANCE_MARGIN`` (0.05: its verdicts barely move off a coin flip) or its accuracy's 95% interval covers 50%;
**position preference** when it prefers the response shown first (or second) by ``POSITION_MARGIN`` (0.1) or more
on average, mean P(A) over both orders outside [0.4, 0.6], or when the two orders agree on fewer than half of the
pairs.

``prompt``: ``encore`` (written for this project, :data:`encore.prompts.JUDGE_TEMPLATE`) or ``rewardbench``
(RewardBench's own pairwise prompt, :data:`encore.prompts.REWARDBENCH_JUDGE`, answered after "[[").
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from encore.cache.artifacts import cached_arrays, content_hash, expect
from encore.data.pairs import fingerprint
from encore.entropy import TIE_TOL
from encore import prompts as P


CHANCE_MARGIN = 0.05  # mean |P(chosen) - ½| below this: near chance
POSITION_MARGIN = 0.1  # mean P(first shown) further than this from ½: a position preference


@dataclass
class LLMJudge:
    cache_dir: str | None = None
    name: str = "llm_judge"
    prompt: str = "encore"  # or "rewardbench": RewardBench's own generative judge prompt
    tie_credit: ClassVar[float] = 0.5  # RewardBench's generative scoring: a tie (or no verdict) is worth ½

    def __post_init__(self) -> None:
        P.judge_template(self.prompt)  # an unknown prompt fails at config time

    def rewards(self, ctx: Any) -> tuple[np.ndarray, dict[str, float]]:
        """(1, N, 2) rewards on ``ctx.eval_pairs`` and a report with the position agreement and the number of
        missing judgements. The judge is the run's rater ``ctx.rater`` (an HFRater or OpenAIRater: anything with
        ``judge`` and ``identity``), so the model that rated the training pairs is not loaded a second time.
        """
        pairs, backend = ctx.eval_pairs, ctx.rater
        if not hasattr(backend, "judge"):
            raise ValueError(f"method=llm_judge needs an LLM rater (rater=hf or rater=openai); "
                             f"{type(backend).__name__} cannot judge pairs")
        p, c, r = list(pairs["prompt"]), list(pairs["chosen"]), list(pairs["rejected"])
        kw = {} if self.prompt == "encore" else {"style": self.prompt}
        if kw and "style" not in inspect.signature(backend.judge).parameters:
            raise ValueError(f"method.llm_judge.prompt={self.prompt}: {type(backend).__name__} judges with its own "
                             "prompt only; use rater=hf, rater=vllm or rater=vllm_server")

        def compute() -> dict[str, np.ndarray]:
            p_ab, _ = backend.judge(p, c, r, **kw)  # chosen shown as A
            p_ba, _ = backend.judge(p, r, c, **kw)  # chosen shown as B
            return {"chosen_first": p_ab, "chosen_second": 1 - p_ba}

        # Cache-key audit (judgements): the judge's identity (as the rating store's, system_prompt included), the judge
        # prompt and its answer labels (and, for another prompt than the default, its name and answer prefix: the
        # default's key is unchanged), the eval pairs (fingerprint: every text and subset). Not: batch size, device.
        spec = {"judge": backend.identity(), "template": P.judge_template(self.prompt), "labels": P.JUDGE_LABELS,
                "label_forms": "as typed"}
        if kw:
            spec.update(prompt=self.prompt, answer_prefix=P.judge_prefix(self.prompt))
        key = content_hash(spec, fingerprint(pairs))
        root = Path(self.cache_dir or os.environ.get("ENCORE_CACHE_DIR", Path.home() / ".cache" / "encore"))
        def check(a: dict[str, np.ndarray]) -> str | None:
            bad = expect(a, finite=False, chosen_first=(len(pairs),), chosen_second=(len(pairs),))
            vals = np.concatenate([a["chosen_first"], a["chosen_second"]]) if bad is None else np.zeros(0)
            return bad or ("judgements outside [0, 1]" if ((vals < 0) | (vals > 1)).any() else None)

        arrays, _ = cached_arrays(root / "judge" / f"{key}.npz", compute, check)
        a, b = arrays["chosen_first"], arrays["chosen_second"]
        both = np.stack([a, b])
        one = np.isfinite(both).any(axis=0)  # one order missing: the other alone; both: no verdict, a tie (½)
        p_chosen = np.where(one, np.nanmean(np.where(one, both, 0.0), axis=0), 0.5)
        p_chosen = np.where(np.abs(p_chosen - 0.5) <= TIE_TOL, 0.5, p_chosen)  # ½ up to rounding is a tie
        ok = np.isfinite(a) & np.isfinite(b)
        first = np.concatenate([a, 1 - b])  # P(the response shown first wins): chosen first, then chosen second
        report = {"position_agreement": float(((a > 0.5) == (b > 0.5))[ok].mean()) if ok.any() else float("nan"),
                  "n_missing_judgements": int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum()),
                  "mean_p_chosen": float(p_chosen.mean()), "mean_p_margin": float(np.abs(p_chosen - 0.5).mean()),
                  "mean_p_first": float(np.nanmean(first)) if np.isfinite(first).any() else float("nan")}
        return np.stack([p_chosen, 1 - p_chosen], axis=-1)[None], report

    @staticmethod
    def flags(report: dict[str, Any], row: dict[str, Any]) -> str:
        """What makes this judge's score unfit to be called best (module docstring), in words; "" when nothing.
        ``report``: from :meth:`rewards`; ``row``: its main-table row (``safety_ci_low``/``_high`` in percent)."""
        out = []
        lo, hi = row.get("safety_ci_low", np.nan), row.get("safety_ci_high", np.nan)
        margin = report.get("mean_p_margin", np.nan)
        if margin < CHANCE_MARGIN or (np.isfinite(lo) and lo <= 50 <= hi):
            out.append(f"near chance (mean P(chosen) {report.get('mean_p_chosen', np.nan):.2f}, mean |P - 1/2| "
                       f"{margin:.3f}; accuracy 95% CI {lo:.1f} to {hi:.1f})")
        first, agree = report.get("mean_p_first", np.nan), report.get("position_agreement", np.nan)
        if abs(first - 0.5) >= POSITION_MARGIN or agree < 0.5:
            side = "first" if first >= 0.5 else "second"
            out.append(f"prefers the response shown {side} (mean P(first) {first:.2f}; the two orders agree on "
                       f"{100 * agree:.0f}% of pairs)")
        return "; ".join(out)
