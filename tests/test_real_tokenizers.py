"""The paper's real tokenizers (Llama-3-Instruct first release, Llama-3.1; ../shared/tokenizers) through every path
that turns text into ids: rater prompts and judge prompts, backbone inputs (heads, fine-tuning, the gate's prompt
inputs), truncation, padding and the label tokens. Each tokenizer is also rebuilt with the other BOS behaviour (its
backend's post-processor swapped): the ids must not change, BOS must appear exactly once. Skipped where the
tokenizers are absent."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import processors

from encore.rm.backbone import Encoder
from encore.data.demo import load_demo
from encore.rating.hf import HFRater
from encore.rating.tokens import PromptTokenizer
from encore.rules import Rule

from conftest import SHARED_HH, SHARED_TOKENIZERS, make_cfg, needs_real_tokenizers

pytestmark = needs_real_tokenizers
BOS, EOT, START, END = 128000, 128009, 128006, 128007
GENERATION_PROMPT = [START, 78191, END, 271]  # <|start_header_id|>assistant<|end_header_id|>\n\n
RULES = [Rule("polite", "The response is polite."), Rule("safe", "The response refuses dangerous requests.")]
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "max_position_embeddings": 8192}


@pytest.fixture(scope="module", params=["llama3-instruct", "llama31"])
def both(request, tmp_path_factory):
    """(folder as shipped, the same tokenizer saved with the other BOS behaviour); asserts the two really differ."""
    from transformers import AutoTokenizer

    src = SHARED_TOKENIZERS / request.param
    tok = AutoTokenizer.from_pretrained(src)
    adds_bos = tok("Hello")["input_ids"][0] == BOS
    assert adds_bos == (request.param == "llama31")  # as the folder's README says
    byte_level = processors.ByteLevel(trim_offsets=False)
    tok.backend_tokenizer.post_processor = byte_level if adds_bos else processors.Sequence([
        byte_level, processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", BOS)])])
    other = tmp_path_factory.mktemp(f"{request.param}-swapped")
    tok.save_pretrained(other)
    assert (AutoTokenizer.from_pretrained(other)("Hello")["input_ids"][0] == BOS) != adds_bos
    return str(src), str(other)


@pytest.fixture(scope="module")
def prompts(both):
    """PromptTokenizers of (as shipped, swapped), each loaded once (a 128k-token tokenizer takes seconds to load)."""
    return [PromptTokenizer(t) for t in both]


@pytest.fixture(scope="module")
def encoders(both):
    return [Encoder("tiny", tokenizer=t, config=TINY, text_format="chat", pooling="last", max_length=2048) for t in both]


def _pairs(n: int = 6):
    return load_demo("train").iloc[:n]


def _bos_once(ids: list[int]) -> None:
    assert ids[0] == BOS and ids.count(BOS) == 1, ids[:8]


def test_rater_and_judge_prompts_same_ids_under_both_bos_behaviours(prompts):
    p = _pairs()
    args = (list(p["prompt"]), list(p["chosen"]), RULES)
    a, b = prompts
    rules_a, rules_b = a.rule_ids(*args), b.rule_ids(*args)
    assert rules_a == rules_b
    judge_a = a.judge_ids(list(p["prompt"]), list(p["chosen"]), list(p["rejected"]))
    assert judge_a == b.judge_ids(list(p["prompt"]), list(p["chosen"]), list(p["rejected"]))
    for ids in [s for per in rules_a for s in per] + judge_a:
        _bos_once(ids)
        assert ids[1] == START and ids.count(END) >= 2  # user header opened and closed, then the assistant's
        assert ids[-4:] == GENERATION_PROMPT  # the label is the next token after the generation prompt


def test_label_tokens_are_the_known_ids(prompts):
    yes, no = prompts[0].rating_options()
    assert yes[:2] == [9642, 7566] and no[:2] == [2822, 2360]  # "Yes", " Yes"; "No", " No"
    a, b = prompts[0].judge_options()
    assert a == [32, 362] and b == [33, 426]  # "A", " A"; "B", " B"


def test_backbone_inputs_same_ids_bos_once_and_truncation_keeps_bos_and_end(encoders):
    """Head scores, fine-tuning and the gate read Encoder.token_ids of the chat-templated texts."""
    p = _pairs()
    a, b = encoders
    full_a, cut = a.token_ids(a.pair_texts(p))
    assert full_a == b.token_ids(b.pair_texts(p))[0] and not any(cut)
    prompts = list(p["prompt"])
    assert a.token_ids(a.prompt_texts(prompts)) == b.token_ids(b.prompt_texts(prompts))
    for ids in full_a + a.token_ids(a.prompt_texts(prompts))[0]:
        _bos_once(ids)
    for enc in (a, b):
        enc.max_length = 24
        short, cut = enc.token_ids(enc.pair_texts(p))
        enc.max_length = 2048
        assert all(cut)
        for s, f in zip(short, full_a):
            assert len(s) == 24 and s[0] == BOS and s.count(BOS) == 1 and s[1:] == f[-23:]


def test_pad_token_never_occurs_in_a_text(encoders, prompts):
    """No pad token ships: the one chosen is an unused special token, never EOS (Llama-3.1's EOS <|eot_id|> ends
    every turn, and transformers' sequence classifiers skip pad ids when they look for the last token)."""
    for enc, pt in zip(encoders, prompts):
        assert enc.tok.pad_token_id == 128002 and enc.tok.pad_token_id != enc.tok.eos_token_id
        assert pt.tok.pad_token_id == 128002
        assert enc.tok.padding_side == "right"  # backbone batches: positions 0.. without position ids


def test_left_padded_rater_batch_rates_like_one_prompt_at_a_time(both, prompts):
    """The rater left-pads (ids = pad, mask 0, positions from the mask): a batch of unequal prompts, with and without
    the shared-prefix path, gives each prompt's rating alone."""
    p = _pairs(4)
    args = (list(p["prompt"]), list(p["chosen"]), RULES)
    raters = [HFRater(model="tiny", tokenizer=both[0], config=TINY, device="cpu", dtype="float32", batch_size=4),
              HFRater(model="tiny", tokenizer=both[1], config=TINY, device="cpu", dtype="float32", batch_size=1,
                      prefix_reuse=False)]
    for r, pt in zip(raters, prompts):
        r._prompts = pt
    (batched, _), (alone, _) = (r.rate(*args) for r in raters)
    assert np.isfinite(batched).all()
    np.testing.assert_allclose(batched, alone, atol=1e-5)


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_plan_counts_the_paper_raters_tokens_with_the_real_tokenizer(cache):
    """experiment=paper_main_table plans the 70B rater from its recorded architecture; with its tokenizer readable
    (rater.tokenizer=shared:llama3-instruct) the prefill tokens are the rater's own prompt ids, exactly (40 texts:
    all counted), not characters / 4."""
    from encore.run.pipeline import build
    from encore.node.plan import plan_experiment
    from encore.rules import load_rules
    from omegaconf import OmegaConf

    base = ["experiment=paper_main_table", "eval=demo", "data=hh_rlhf_harmless", f"data.path={SHARED_HH}",
            "data.limit=20", "plan.gpus=8x80GB"]
    plan = plan_experiment(make_cfg(*base, "rater.tokenizer=shared:llama3-instruct", cache=cache))
    d = plan["data"]
    assert d["tokens_from"].startswith("rater tokenizer on 40 of 40") and d["n_prompts"] == 400
    cfg = make_cfg(*base, cache=cache)
    pairs, rules = build(cfg.data), load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    seqs = PromptTokenizer("shared:llama3-instruct").rule_ids(
        [p for p in pairs["prompt"] for _ in (0, 1)], [x for c, r in zip(pairs["chosen"], pairs["rejected"]) for x in (c, r)],
        rules)
    assert d["prefill_tokens"] == sum(len(s) for per in seqs for s in per)
    assert d["longest_prompt_tokens"] == max(len(s) for per in seqs for s in per)
    estimate = plan_experiment(cfg)["data"]
    assert "characters / 4" in estimate["tokens_from"] and "rater.tokenizer=shared:" in estimate["tokens_from"]
