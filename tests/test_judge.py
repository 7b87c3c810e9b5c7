import numpy as np

from encore.data.demo import load_demo
from encore.judge import LLMJudge
from encore.methods import FitContext


class PositionBiased:
    """P(A) = 0.9 whatever is shown: a pure position bias, plus a real preference of +0.05 for the chosen text."""

    def __init__(self, chosen):
        self.chosen = set(chosen)

    def identity(self):
        return {"kind": "biased"}

    def judge(self, prompts, a, b):
        return np.array([0.9 + (0.05 if x in self.chosen else -0.05) for x in a]), [""] * len(a)


def test_both_orders_cancel_position_bias(tmp_path):
    pairs = load_demo("eval").iloc[:10]
    rewards, rep = LLMJudge(cache_dir=str(tmp_path)).rewards(
        FitContext([], None, None, None, eval_pairs=pairs, rater=PositionBiased(pairs["chosen"])))
    # chosen first: 0.95; chosen second: 1 - 0.85 = 0.15; mean 0.55 -> chosen wins every pair, barely
    np.testing.assert_allclose(rewards[0, :, 0], 0.55)
    np.testing.assert_allclose(rewards[0, :, 1], 0.45)
    assert rep["position_agreement"] == 0.0 and rep["n_missing_judgements"] == 0


def test_judge_in_pipeline(tmp_path, cache):
    from conftest import make_cfg
    from encore.pipeline import run_evaluate

    cfg = make_cfg("method=llm_judge", "rater=hf_tiny", "data.limit=12", "eval.subsets=[donotanswer]", cache=cache)
    m = run_evaluate(cfg, tmp_path / "run")
    row = m["main_table"][0]
    assert row["method"] == "llm_judge" and 0 <= row["safety"] <= 100 and "position_agreement" in row
