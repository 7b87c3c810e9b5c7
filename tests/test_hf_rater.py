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


@pytest.mark.parametrize("tok, arch", FAMILIES)
def test_work_counts_the_real_tokens_the_passes_computed_and_their_padding(pairs, tok, arch):
    """``HFRater.work``: every response's shared prefix once plus its K suffixes, charged by
    :func:`encore.scale.utilisation.shared_prefix_flops`; padding counted apart (with one response per batch, only its suffixes' padding)."""
    from encore.rating.tokens import common_prefix
    from encore.scale.utilisation import shared_prefix_flops

    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    r = _rater(tok, arch, batch_size=4)
    r.rate(*args)
    seqs = r.prompts.rule_ids(*args)
    real = [(c, [len(s) - c for s in per]) for per in seqs for c in [common_prefix(per)]]
    assert r.work["tokens"] == sum(p + sum(x) for p, x in real)
    assert r.work["flops"] == shared_prefix_flops(r._shape, real)
    assert r.work["padding"] > 0
    one = _rater(tok, arch, batch_size=1)
    one.rate(*args)
    assert one.work["tokens"] == r.work["tokens"] and one.work["flops"] == r.work["flops"]
    suffix_pad = sum(max(x) * len(x) - sum(x) for _, x in real)  # each response's suffixes padded to its longest
    assert one.work["padding"] == suffix_pad


# rater=smollm2's ratings of the first 3 HH-RLHF harmless-test pairs (chosen, rejected per pair) under safety10,
# float32 on CPU, rater.batch_size=4, computed on main at e6e12fe (before the CPU speed-ups of issue 36).
PINNED_MAIN = [
    [0.31431739, 0.28421574, 0.28908081, 0.35925338, 0.28238245, 0.33211093, 0.31217802, 0.34050791, 0.30449258, 0.26373785],
    [0.43163919, 0.41301519, 0.39776977, 0.50023482, 0.38646319, 0.45059279, 0.42051813, 0.44943173, 0.39182439, 0.39679238],
    [0.31881767, 0.30681477, 0.30284853, 0.38286758, 0.30509705, 0.36000572, 0.36541719, 0.34242468, 0.35608224, 0.28628281],
    [0.49721658, 0.47145671, 0.43308428, 0.54568266, 0.47692158, 0.54515875, 0.56164504, 0.51580721, 0.61645600, 0.48947064],
    [0.32519849, 0.30292744, 0.31494030, 0.37527282, 0.29585400, 0.35120013, 0.40167319, 0.36071340, 0.36422702, 0.32121048],
    [0.27994902, 0.25749843, 0.28618271, 0.33095771, 0.26672274, 0.33572061, 0.37400039, 0.31866635, 0.34255177, 0.28573385]
]


@pytest.mark.slow
def test_smollm2_ratings_are_those_of_main_before_the_speed_ups(smollm2):
    """The prefix pass without the LM head and GQA inside SDPA change no rating: |Δ| < 1e-6 against main's values
    (bit for bit on the machine that pinned them)."""
    from omegaconf import OmegaConf

    from conftest import ROOT, SHARED_HH
    from encore.data.pairs import load_pairs
    from encore.rules import load_rules

    if not SHARED_HH.exists():
        pytest.skip("needs ../shared/data (HH-RLHF test file)")
    rules = load_rules(OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "rules" / "safety10.yaml"), resolve=True))
    p = load_pairs(path=str(SHARED_HH), format="hh", subset_field=None, empty="drop", limit=3)
    prompts = [x for x in p["prompt"] for _ in (0, 1)]
    responses = [x for c, r in zip(p["chosen"], p["rejected"]) for x in (c, r)]
    values, _ = HFRater(model="smollm2", device="cpu", dtype="float32", batch_size=4).rate(prompts, responses, rules)
    assert np.abs(values - np.array(PINNED_MAIN)).max() < 1e-6
