"""Every cache key covers every input its producer reads (the audit beside each key): changing one input is a
recompute, changing a setting that does not shape the result is a hit. Two rules a rater reads identically are
reported."""

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from encore.rm.backbone import Encoder
from encore.data.demo import load_demo
from encore.rm.probe import RidgeHeads, embed_pairs
from encore.rating.engine import rate_pairs, rater_key
from encore.rating.embedding import EmbeddingRater
from encore.rating.hf import HFRater
from encore.rating.remote import OpenAIRater
from encore.rating.vllm import VLLMRater
from encore.rules import Rule

from conftest import FakeRater

RULES = [Rule("a", "rule a", "a reply that follows a", "a reply that breaks a"),
         Rule("b", "rule b", "a polite, careful reply", "a rude, reckless reply")]
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 256}


def _changes(obj, field, value):
    return rater_key(dataclasses.replace(obj, **{field: value})) != rater_key(obj)


HF = HFRater(model="m", tokenizer="tiny-bpe", device="cpu", dtype="float32")  # explicit: device changes no key
HF_IN = {"model": "m2", "revision": "abc", "tokenizer": "tiny-wordpiece", "mode": "scale", "system_prompt": "s",
         "max_length": 100, "dtype": "bfloat16"}
HF_OUT = {"batch_size": 3, "prefix_reuse": False, "device": "cuda", "device_map": "balanced",
          "max_memory": {"0": "1GB"}, "offload_folder": "/x", "n_rules": 3}


@pytest.mark.parametrize("field", sorted(HF_IN))
def test_hf_rater_key_covers_each_input(field):
    assert _changes(HF, field, HF_IN[field])


@pytest.mark.parametrize("field", sorted(HF_OUT))
def test_hf_rater_key_ignores_what_does_not_change_a_rating(field):
    assert not _changes(HF, field, HF_OUT[field])


def test_the_key_records_the_dtype_auto_resolves_to_the_same_in_hf_and_vllm(monkeypatch):
    """Issue 33: dtype=auto is float32 on a CPU and bf16 on a GPU that supports it, in rater=hf and rater=vllm alike
    (vLLM's own auto ran the float32 SmolLM2 in bf16 on a CPU, 0.047 from rater=hf), and the key records what it
    became: auto shares ratings with the dtype it resolves to, a CPU's never pass for a GPU's."""
    import torch

    hf_cpu, vllm_cpu = HFRater(model="m", device="auto"), VLLMRater(model="m")
    on_cpu = rater_key(hf_cpu)
    assert on_cpu == rater_key(HFRater(model="m", dtype="float32"))
    assert rater_key(vllm_cpu) == rater_key(VLLMRater(model="m", dtype="float32"))
    assert vllm_cpu.engine_dtype() == "float32" and hf_cpu.identity()["dtype"] == vllm_cpu.identity()["dtype"]
    assert rater_key(HFRater(model="m", device="cpu")) == rater_key(hf_cpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert rater_key(HFRater(model="m", device="auto")) == rater_key(HFRater(model="m", dtype="bfloat16")) != on_cpu
    assert VLLMRater(model="m").engine_dtype() == "bfloat16"
    assert rater_key(VLLMRater(model="m")) == rater_key(VLLMRater(model="m", dtype="bf16"))
    assert rater_key(HFRater(model="m", device="cpu")) == on_cpu  # device=cpu computes in float32
    assert rater_key(HFRater(model="m", dtype="bf16")) == rater_key(HFRater(model="m", dtype="bfloat16"))


VLLM = VLLMRater(model="m")


@pytest.mark.parametrize("field, value", [("model", "m2"), ("revision", "r"), ("tokenizer", "t"), ("mode", "scale"),
                                          ("system_prompt", "s"), ("max_length", 10), ("dtype", "bfloat16"),
                                          ("engine_kwargs", {"quantization": "fp8"}),
                                          ("engine_kwargs", {"kv_cache_dtype": "fp8"})])
def test_vllm_rater_key_covers_each_input(field, value):
    assert _changes(VLLM, field, value)


@pytest.mark.parametrize("field, value", [("tensor_parallel_size", 8), ("gpu_memory_utilization", 0.5),
                                          ("engine_kwargs", {"max_num_seqs": 8, "enforce_eager": True})])
def test_vllm_rater_key_ignores_speed_and_memory_settings(field, value):
    assert not _changes(VLLM, field, value)


OPENAI = OpenAIRater(model="m")


@pytest.mark.parametrize("field, value", [("model", "m2"), ("mode", "scale"), ("system_prompt", "s"),
                                          ("top_logprobs", 5), ("extra_body", {"temperature": 0.7}),
                                          ("extra_body", {"chat_template_kwargs": {"thinking": True}}),
                                          ("base_url", "https://api.example.com/v1"), ("vllm_extensions", True)])
def test_openai_rater_key_covers_each_request_input(field, value):
    assert _changes(OPENAI, field, value)


@pytest.mark.parametrize("field, value", [("base_url", "http://localhost:8123/v1/"), ("api_key_env", "OTHER"),
                                          ("max_concurrency", 2), ("max_retries", 0), ("timeout", 5.0)])
def test_openai_rater_key_ignores_a_local_port_the_key_and_the_transport(field, value):
    """A local server is keyed by the model it serves: SLURM jobs that each serve on their own port share a cache."""
    assert not _changes(OPENAI, field, value)


def test_two_remote_servers_of_one_model_name_do_not_share_ratings():
    a = OpenAIRater(model="m", base_url="https://a.example.com/v1")
    assert rater_key(a) != rater_key(dataclasses.replace(a, base_url="https://b.example.com/v1"))
    assert rater_key(a) == rater_key(dataclasses.replace(a, base_url="https://a.example.com/v1/"))


@pytest.mark.parametrize("field, value", [("model", "x"), ("temperature", 0.1), ("with_prompt", True),
                                          ("max_length", 64)])
def test_embedding_rater_key_covers_each_input(field, value):
    assert _changes(EmbeddingRater(), field, value)


def test_edited_rule_descriptions_are_rated_again_by_the_embedded_rater(tmp_path):
    """The embedded rater reads follows/violates: editing them must not reuse the old ratings (n_new=0 before)."""
    pairs = load_demo("train").iloc[:4]
    rater = EmbeddingRater(device="cpu")
    first, rep = rate_pairs(pairs, RULES, rater, tmp_path, progress=False)
    assert rep["n_new"] == 2 * 4 * len(RULES)
    assert rate_pairs(pairs, RULES, rater, tmp_path, progress=False)[1]["n_new"] == 0  # unchanged: a hit
    edited = [RULES[0], dataclasses.replace(RULES[1], follows="a reply in French", violates="a reply in English")]
    again, rep = rate_pairs(pairs, edited, rater, tmp_path, progress=False)
    # every response is rated again (a response goes to the rater whole), but only the edited rule's ratings are new:
    # "from the cache" and "new" add up to the ratings of the run (issue 33)
    assert (rep["n_new"], rep["n_cached"]) == (2 * 4, 2 * 4)
    np.testing.assert_array_equal(again.values[..., 0], first.values[..., 0])
    assert not np.allclose(again.values[..., 1], first.values[..., 1])
    fresh, _ = rate_pairs(pairs, edited, rater, tmp_path / "fresh", progress=False)
    np.testing.assert_allclose(again.values, fresh.values)  # the cache gives what a fresh cache gives


def test_llm_raters_key_a_rule_by_its_text_only(tmp_path):
    """An LLM rater reads the rule's text: editing the descriptions (which it never reads) is a hit."""
    pairs = load_demo("train").iloc[:3]
    rate_pairs(pairs, RULES, FakeRater(), tmp_path, progress=False)
    same = [dataclasses.replace(r, follows="x", violates="y") for r in RULES]
    assert rate_pairs(pairs, same, FakeRater(), tmp_path, progress=False)[1]["n_new"] == 0
    reworded = [RULES[0], dataclasses.replace(RULES[1], text="rule b, reworded")]
    assert rate_pairs(pairs, reworded, FakeRater(), tmp_path, progress=False)[1]["n_new"] == 2 * 3  # the reworded rule


def test_two_rules_a_rater_reads_identically_are_reported(tmp_path, caplog):
    pairs = load_demo("train").iloc[:2]
    twins = [Rule("a", "same text"), Rule("b", "same text"), Rule("c", "other")]
    with caplog.at_level(logging.WARNING):
        _, rep = rate_pairs(pairs, twins, FakeRater(), tmp_path, progress=False)
    assert rep["rule_collisions"] == [["a", "b"]]
    assert "['a', 'b']" in caplog.text and "copies" in caplog.text


def _encoder(**kw):
    return Encoder("tiny-bert", tokenizer="embedded:all-MiniLM-L6-v2", device="cpu", **{"config": TINY_BERT, **kw})


@pytest.mark.parametrize("change", [{"seed": 1}, {"pooling": "cls"}, {"normalize": True}, {"max_length": 16},
                                    {"dtype": "float32"}, {"config": {**TINY_BERT, "intermediate_size": 48}}])
def test_embedding_cache_key_covers_each_encoder_input(tmp_path, change):
    pairs = load_demo("train").iloc[:3]
    assert not embed_pairs(pairs, _encoder(), tmp_path, progress=False)[1]
    assert embed_pairs(pairs, _encoder(), tmp_path, progress=False)[1]
    assert not embed_pairs(pairs, _encoder(**change), tmp_path, progress=False)[1]
    assert embed_pairs(pairs, _encoder(batch_size=2), tmp_path, progress=False)[1]  # batching is not an input


def test_embedding_cache_key_covers_every_text_and_the_subset(tmp_path):
    pairs = load_demo("train").iloc[:3]
    embed_pairs(pairs, _encoder(), tmp_path, progress=False)
    from encore.data.pairs import _pair_ids

    for col in ("prompt", "chosen", "rejected"):
        edited = pairs.copy()
        edited.loc[0, col] = edited.loc[0, col] + " (edited)"
        edited["pair_id"] = _pair_ids(edited)
        assert not embed_pairs(edited, _encoder(), tmp_path, progress=False)[1], col
    assert not embed_pairs(pairs.assign(subset="other"), _encoder(), tmp_path, progress=False)[1]


def test_head_scores_key_covers_the_ratings_the_pairs_and_the_heads(tmp_path):
    train, ev = load_demo("train").iloc[:12], load_demo("eval").iloc[:4]
    y = np.random.default_rng(0).random((12, 2, 2))
    enc = _encoder()
    fit = lambda heads, t=train, e=ev, r=y: heads.fit_score(t, r, e, enc, tmp_path)[1]["head_scores_cached"]  # noqa: E731
    assert not fit(RidgeHeads())
    assert fit(RidgeHeads())
    assert not fit(RidgeHeads(), r=1 - y)  # ratings replaced by 1 - v
    assert not fit(RidgeHeads(alphas=(1.0,)))
    assert not fit(RidgeHeads(val_frac=0.3))
    assert not fit(RidgeHeads(seed=1))
    assert not fit(RidgeHeads(cross_fit=3))  # the held-out scores' folds: the fitting choice is in the key
    assert fit(RidgeHeads(cross_fit=3))  # and a rerun (a τ sweep) reuses them
    assert not fit(RidgeHeads(), e=load_demo("eval").iloc[4:8])
    assert not fit(RidgeHeads(), t=train.iloc[::-1].reset_index(drop=True), r=y[::-1].copy())


def test_fine_tuned_model_key_holds_the_global_batch_not_how_it_was_split():
    """``train.global_batch`` (pairs per optimiser step) is the setting the model depends on: one process at 8 pairs
    x 4 accumulation steps and eight at 4 x 1 train the same model (tests/test_launch.py), so the key holds the
    global batch and not ``batch_size`` (the micro-batch memory allows) or the process count; another global batch
    is another model."""
    from encore.rm.finetune import Finetune

    one = Finetune(global_batch=32, batch_size=8)
    assert one.split(1) == (8, 4) and one.split(8) == (4, 1) and one.split(32) == (1, 1)
    assert "global_batch" in one.identity() and "batch_size" not in one.identity()
    assert Finetune(global_batch=32, batch_size=2).identity() == one.identity()
    assert Finetune(global_batch=64, batch_size=8).identity() != one.identity()
    with pytest.raises(ValueError, match=r"train.global_batch=32 on 3 processes: .* launch 1, 2, 4, 8, 16, 32 "):
        one.split(3)


def test_judge_cache_key_covers_the_judge_and_the_pairs(tmp_path):
    from encore.judge import LLMJudge
    from encore.methods import FitContext

    class Judge:
        calls = 0

        def __init__(self, name):
            self.name = name

        def identity(self):
            return {"kind": "j", "model": self.name}

        def judge(self, prompts, a, b):
            Judge.calls += 1
            return np.full(len(a), 0.6), [""] * len(a)

    ev = load_demo("eval")
    run = lambda j, p: LLMJudge(cache_dir=str(tmp_path)).rewards(FitContext([], None, None, None, eval_pairs=p, rater=j))  # noqa: E731
    run(Judge("x"), ev.iloc[:3])
    run(Judge("x"), ev.iloc[:3])
    assert Judge.calls == 2
    run(Judge("y"), ev.iloc[:3])
    assert Judge.calls == 4
    run(Judge("x"), ev.iloc[1:4])
    assert Judge.calls == 6


def test_truncation_report_key_covers_the_encoder(tmp_path):
    from encore.rm.truncation import truncation_report

    pairs = load_demo("train").iloc[:3]
    a = truncation_report(_encoder(max_length=256), pairs, tmp_path)
    b = truncation_report(_encoder(max_length=8), pairs, tmp_path)
    assert a["max_length"] == 256 and b["max_length"] == 8 and b["texts_truncated"] > 0
