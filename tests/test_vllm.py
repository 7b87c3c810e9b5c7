"""What the real-engine lane (tests/test_vllm_engine.py, .ci/vllm_lane) does not show, against a stand-in HTTP server
speaking vLLM's request extensions (tests/llm_server.py): a top-k window that misses the labels (the lane's model
keeps them inside it), how many requests a too-long prompt costs (none; the real server does not count them per
test), and the install hint where vLLM is absent. Ratings equal to rater=hf, the refusal of a raw-logprobs server
and the in-process engine are tested on the real engine there."""

import sys

import numpy as np
import pytest
import torch

from encore.data.demo import load_demo
from encore.rating.hf import HFRater
from encore.rating.remote import OpenAIRater
from encore.rules import Rule
from encore.rm.tiny import tiny_causal_config

from conftest import save_tiny_llama
from llm_server import LLMServer

RULES = [Rule("a", "The response is polite."), Rule("b", "The response refuses dangerous requests."),
         Rule("c", "The response protects private information.")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def pairs():
    return load_demo("train").iloc[:6]


def _exact(url, **kw):
    return OpenAIRater(model="tiny", base_url=url, vllm_extensions=True, tokenizer="tiny-bpe", backoff_base=0.01,
                       backoff_max=0.05, **kw)


def test_exact_where_a_top_k_window_misses_the_labels(saved, pairs):
    """A random model puts "Yes"/"No" far down its 600-token vocabulary: a top-5 window (the generic chat path)
    misses them; the vLLM path reads them exactly."""
    _, local = saved
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    with LLMServer(local) as srv:
        window, why = OpenAIRater(model="tiny", base_url=srv.url, top_logprobs=5).rate(*args)
        exact, _ = _exact(srv.url).rate(*args)
    assert np.isnan(window).all() and {r for row in why for r in row} == {"no label token among top_logprobs (raise rater.top_logprobs)"}
    np.testing.assert_allclose(exact, local.rate(*args)[0], atol=1e-5)


def test_too_long_prompts_are_missing_with_the_reason_rater_hf_gives(saved, pairs):
    _, local = saved
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    short = HFRater(model="tiny", tokenizer="tiny-bpe", config=tiny_causal_config("llama", hidden=32, layers=2),
                    device="cpu", dtype="float32", max_length=160)
    ref, ref_why = short.rate(*args)
    with LLMServer(local) as srv:
        before = srv.requests
        got, why = _exact(srv.url, max_length=160).rate(*args)
        sent = srv.requests - before
    assert why == ref_why and any(r[0] for r in why)
    assert sent == sum(1 for r in why for x in r if not x)  # no request for a prompt that is too long
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_missing_vllm_says_how_to_install(monkeypatch):
    from encore.rating.vllm import VLLMRater

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[vllm\]"'):
        VLLMRater(model="x").load()


@pytest.mark.gpu
def test_real_vllm_matches_rater_hf_on_the_same_model(saved, pairs):
    """Needs CUDA and vLLM: the real engine (tensor parallel 1, prefix caching, processed logprobs) against rater=hf
    in fp32 on the same saved tiny model; bf16 kernels differ, so within 2e-3."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("vllm")
    from encore.rating.vllm import VLLMRater

    path, _ = saved
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    ref, _ = HFRater(model=path, device="cuda", dtype="float32").rate(*args)
    got, reasons = VLLMRater(model=path, dtype="float32", gpu_memory_utilization=0.3).rate(*args)
    assert all(x == "" for row in reasons for x in row)
    np.testing.assert_allclose(got, ref, atol=2e-3)
