"""P(Yes), computed here by hand from the model's raw logits (numpy softmax, label tokens found by scanning the
vocabulary), against the naive reference loop and the fast rater; and the raw full-vocabulary P(Yes) option
(rater.normalise=false), which leaves the default ratings and their cache key as they were."""

import numpy as np
import pytest
import torch

from encore.data.demo import load_demo
from encore import prompts as P
from encore.rating.hf import HFRater
from encore.rating.naive import naive_rate
from encore.rm.tiny import tiny_causal_config
from encore.rules import Rule

RULES = [Rule("a", "The response is polite."), Rule("b", "The response gives no instructions for violence.")]
FORMS = {"yes": {"Yes", " Yes", "yes", " yes", "YES", " YES"}, "no": {"No", " No", "no", " no", "NO", " NO"}}


def _rater(**kw):
    return HFRater(model="tiny-llama", tokenizer="tiny-bpe", config=tiny_causal_config("llama", hidden=32, layers=2),
                   device="cpu", dtype="float32", **kw).load()


def _by_hand(rater, prompts, responses):
    """(M, K) P(Yes) and P(No) from the raw last-position logits: softmax in float64, summed over every vocabulary
    entry that decodes to a form of the label."""
    tok = rater.tok
    ids = {k: [i for i in range(len(tok)) if tok.decode([i]) in forms] for k, forms in FORMS.items()}
    assert ids["yes"] and ids["no"]
    yes, no = np.zeros((len(prompts), len(RULES))), np.zeros((len(prompts), len(RULES)))
    for i, (p, x) in enumerate(zip(prompts, responses)):
        for k, rule in enumerate(RULES):
            seq = rater.prompts.encode(P.rule_messages(p, x, rule.text, "yes_no", 5, None))
            with torch.no_grad():
                z = rater._model(input_ids=torch.tensor([seq])).logits[0, -1].double().numpy()
            e = np.exp(z - z.max())
            yes[i, k], no[i, k] = e[ids["yes"]].sum() / e.sum(), e[ids["no"]].sum() / e.sum()
    return yes, no


@pytest.fixture(scope="module")
def texts():
    pairs = load_demo("train").iloc[:3]
    return list(pairs["prompt"]), list(pairs["chosen"])


def test_ratings_equal_p_yes_over_p_yes_plus_p_no_computed_by_hand(texts):
    rater = _rater()
    yes, no = _by_hand(rater, *texts)
    expected = yes / (yes + no)
    np.testing.assert_allclose(naive_rate(rater, *texts, RULES), expected, rtol=1e-5, atol=0)
    np.testing.assert_allclose(rater.rate(*texts, RULES)[0], expected, rtol=1e-4, atol=0)


def test_the_raw_p_yes_option_is_p_yes_itself_and_keeps_the_default_key(texts):
    default, raw = _rater(), _rater(normalise=False)
    yes, _ = _by_hand(raw, *texts)
    np.testing.assert_allclose(raw.rate(*texts, RULES)[0], yes, rtol=1e-4, atol=0)
    np.testing.assert_allclose(naive_rate(raw, *texts, RULES), yes, rtol=1e-5, atol=0)
    assert "normalise" not in default.identity() and raw.identity() == {**default.identity(), "normalise": False}
    with pytest.raises(ValueError, match="rater.normalise=false with rater.mode=scale"):
        HFRater(model="x", mode="scale", normalise=False)


def test_the_raw_p_yes_is_refused_where_the_engine_cannot_give_it(tmp_path, cache):
    from conftest import make_cfg
    from encore.run.pipeline import run_correlation
    from encore.errors import SettingError

    cfg = make_cfg("rater=vllm_server", "+rater.normalise=false", cache=cache)
    with pytest.raises(SettingError, match=r"rater\.normalise=False: the raw full-vocabulary P\(Yes\) is read by "
                                           r"rater=hf only\. vLLM"):
        run_correlation(cfg, tmp_path / "run")
