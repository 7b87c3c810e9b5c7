"""The local LLM rater on tiny random causal LMs with locally built tokenizers (two tokenizer families)."""

import numpy as np
import pytest

from encore.data.demo import load_demo
from encore.rating.hf import HFRater
from encore.rating.naive import naive_rate
from encore.rules import Rule
from encore.rm.tiny import tiny_causal_config

RULES = [Rule("a", "The response is polite."), Rule("b", "The response gives no instructions for violence."),
         Rule("c", "The response protects private information.")]
FAMILIES = [("tiny-bpe", "llama"), ("tiny-wordpiece", "gpt2")]


def _rater(tok, arch, **kw):
    return HFRater(model=f"tiny-{arch}", tokenizer=tok, config=tiny_causal_config(arch, hidden=32, layers=2),
                   device="cpu", dtype="float32", **kw)


@pytest.fixture(scope="module")
def pairs():
    return load_demo("train").iloc[:9]


@pytest.mark.parametrize("tok, arch", FAMILIES)
def test_batched_prefix_reuse_equals_one_prompt_at_a_time(pairs, tok, arch):
    fast, reasons = _rater(tok, arch, batch_size=4).rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    ref = naive_rate(_rater(tok, arch), list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    assert np.abs(fast - ref).max() < 1e-4
    assert all(r == "" for row in reasons for r in row)
    assert ((fast > 0) & (fast < 1)).all()


@pytest.mark.parametrize("tok, arch", FAMILIES)
def test_scores_do_not_depend_on_batching_or_padding(pairs, tok, arch):
    args = (list(pairs["prompt"]), list(pairs["rejected"]), RULES)
    a, _ = _rater(tok, arch, batch_size=1).rate(*args)
    b, _ = _rater(tok, arch, batch_size=9).rate(*args)  # one batch: every prompt but the longest is padded
    c, _ = _rater(tok, arch, batch_size=3, prefix_reuse=False).rate(*args)
    assert np.abs(a - b).max() < 1e-4 and np.abs(a - c).max() < 1e-4


@pytest.mark.parametrize("tok, arch", FAMILIES)
def test_label_tokens_resolved_from_tokenizer(tok, arch):
    r = _rater(tok, arch).load()
    yes, no = r._options
    decoded = [r.tok.decode([i]).strip().lower() for i in yes + no]
    assert set(decoded[: len(yes)]) == {"yes"} and set(decoded[len(yes):]) == {"no"}
    digits = r.prompts.label_ids(["1", "2", "3"])
    assert [r.tok.decode(ids[:1]).strip() for ids in digits] == ["1", "2", "3"]
    judge = {r.tok.decode([i]).strip() for ids in r.prompts.judge_options() for i in ids}
    as_typed = {r.tok.decode(r.tok(x, add_special_tokens=False)["input_ids"]).strip() for x in "AB"}
    assert judge == as_typed  # "A"/"B" as the tokenizer writes them; never an extra lower-case "a", a common word


def test_scale_mode_and_too_long_prompts_are_missing(pairs):
    r = _rater("tiny-bpe", "llama", mode="scale", scale_max=5, max_length=200)
    v, reasons = r.rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    long = [i for i, row in enumerate(reasons) if row[0]]
    assert long and all("rater.max_length" in reasons[i][0] for i in long)
    assert np.isnan(v[long]).all() and np.isfinite(np.delete(v, long, axis=0)).all()
    with pytest.raises(ValueError, match="scale_max"):
        HFRater(model="x", mode="scale", scale_max=10)
    with pytest.raises(ValueError, match="rater.mode"):
        HFRater(model="x", mode="likert")


def test_judge_probabilities(pairs):
    r = _rater("tiny-wordpiece", "gpt2", batch_size=4)
    p, reasons = r.judge(list(pairs["prompt"]), list(pairs["chosen"]), list(pairs["rejected"]))
    assert p.shape == (9,) and ((p > 0) & (p < 1)).all() and reasons == [""] * 9
