"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1 serving a tiny model."""

import numpy as np
import pytest

from encore.data.demo import load_demo
from encore.rating.engine import rate_pairs
from encore.rating.hf import HFRater
from encore.rating.remote import OpenAIRater
from encore.rules import Rule
from encore.rm.tiny import tiny_causal_config

from llm_server import LLMServer

RULES = [Rule("a", "The response is polite."), Rule("b", "The response refuses dangerous requests.")]


@pytest.fixture(scope="module")
def local():
    return HFRater(model="tiny", tokenizer="tiny-bpe", config=tiny_causal_config("llama", hidden=32, layers=2),
                   device="cpu", dtype="float32").load()


def _client(url, **kw):
    return OpenAIRater(model="tiny", base_url=url, top_logprobs=1000, backoff_base=0.01, backoff_max=0.05, **kw)


def test_server_ratings_equal_local_ratings(local):
    pairs = load_demo("train").iloc[:4]
    with LLMServer(local) as srv:
        remote, reasons = _client(srv.url).rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    ref, _ = local.rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    assert all(r == "" for row in reasons for r in row)
    assert np.abs(remote - ref).max() < 1e-4


def test_retries_on_429_500_and_timeouts_then_succeeds(local):
    pairs = load_demo("train").iloc[:2]
    with LLMServer(local, faults=[429, 500, "slow", 429], slow_s=1.5) as srv:
        v, reasons = _client(srv.url, timeout=0.5, max_concurrency=1).rate(list(pairs["prompt"]),
                                                                           list(pairs["chosen"]), RULES)
        assert srv.requests == 4 + 4  # four faults retried, four ratings served
    assert np.isfinite(v).all() and all(r == "" for row in reasons for r in row)


def test_exhausted_retries_are_missing_with_reason(local):
    pairs = load_demo("train").iloc[:1]
    with LLMServer(local, faults=[500] * 10) as srv:
        v, reasons = _client(srv.url, max_retries=2, max_concurrency=1).rate(list(pairs["prompt"]),
                                                                             list(pairs["chosen"]), RULES)
    assert np.isnan(v).all()
    assert {r for row in reasons for r in row} == {"transient: HTTP 500 after 2 retries"}


def test_an_unreachable_server_fails_the_stage_and_caches_nothing(local, tmp_path):
    """Every request fails: the stage stops with the reason and the fix, stores no rating, and the next run against
    a working server asks for every rating again."""
    from encore.rating.engine import TooManyMissing

    pairs = load_demo("train").iloc[:3]
    dead = _client("http://127.0.0.1:1/v1", max_retries=1)
    with pytest.raises(TooManyMissing, match="check rater.base_url and the server") as e:
        rate_pairs(pairs, RULES, dead, tmp_path, chunk_size=4, progress=False)
    assert "12 of 12 ratings (100%)" in str(e.value)
    assert not list(tmp_path.rglob("shard-*.parquet"))  # the outage was not cached as missing ratings
    with LLMServer(local) as srv:
        ratings, rep = rate_pairs(pairs, RULES, _client(srv.url), tmp_path, chunk_size=4, progress=False)
    assert rep["n_new"] == 12 and ratings.n_missing == 0


def test_a_few_transient_failures_are_reported_and_asked_again(local, tmp_path):
    pairs = load_demo("train").iloc[:4]
    with LLMServer(local, faults=[500]) as srv:  # one request fails and, with no retry allowed, stays failed
        first, rep = rate_pairs(pairs, RULES, _client(srv.url, max_retries=0, max_concurrency=1), tmp_path,
                                chunk_size=8, progress=False, max_missing_share=0.5)
        assert rep["n_transient"] == 1 and first.n_missing == 1
        again, rep2 = rate_pairs(pairs, RULES, _client(srv.url), tmp_path, chunk_size=8, progress=False)
    assert rep2["n_new"] == len(RULES) and again.n_missing == 0  # only the failed response was rated again


def test_api_key_from_environment_only(local, monkeypatch):
    monkeypatch.setenv("ENCORE_TEST_KEY", "sk-secret-123")
    rater = _client("http://127.0.0.1:1/v1", api_key_env="ENCORE_TEST_KEY")
    assert "sk-secret" not in repr(rater) and "sk-secret" not in str(rater.identity())
    pairs = load_demo("train").iloc[:1]
    with LLMServer(local) as srv:
        _client(srv.url, api_key_env="ENCORE_TEST_KEY").rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
        assert srv.seen_auth == {"Bearer sk-secret-123"}


def test_kill_and_resume_gives_identical_table(local, tmp_path):
    pairs = load_demo("train").iloc[:12]

    class Killed(OpenAIRater):
        calls = 0

        def rate(self, *a):
            if Killed.calls == 2:
                raise KeyboardInterrupt("killed")
            Killed.calls += 1
            return super().rate(*a)

    with LLMServer(local) as srv:
        full, _ = rate_pairs(pairs, RULES, _client(srv.url), tmp_path / "a", chunk_size=4, progress=False)
        kw = dict(model="tiny", base_url=srv.url, top_logprobs=1000)
        with pytest.raises(KeyboardInterrupt):
            rate_pairs(pairs, RULES, Killed(**kw), tmp_path / "b", chunk_size=4, progress=False)
        before = srv.requests
        resumed, rep = rate_pairs(pairs, RULES, _client(srv.url), tmp_path / "b", chunk_size=4, progress=False)
        assert rep["n_cached"] == 2 * 4 * len(RULES)
        assert srv.requests - before == rep["n_new"]  # only what was missing was asked again
    np.testing.assert_array_equal(resumed.values, full.values)


def test_top_logprobs_judge_reads_the_answer_letters_in_their_case():
    """The judge's labels keep their case, as rater=hf reads them ("A", " A", never the word "a"); ratings ignore
    case ("Yes", "yes"). Found against the real vLLM server (tests/test_vllm_engine.py), where " a" sat in the window."""
    import math

    from encore.rating.remote import _label_probs

    top = [{"token": t, "logprob": math.log(p)} for t, p in [(" A", 0.2), (" a", 0.3), ("B", 0.1), ("yes", 0.1)]]
    payload = {"choices": [{"logprobs": {"content": [{"token": " A", "logprob": math.log(0.2), "top_logprobs": top}]}}]}
    assert _label_probs(payload, ["A", "B"], cases=False)[0] == pytest.approx([0.2, 0.1])
    assert _label_probs(payload, ["Yes", "No"], cases=True)[0] == pytest.approx([0.1, 0.0])


def test_several_servers_share_the_work_and_give_the_one_server_ratings(local):
    """rater.base_url as a list (the SLURM recipe's copies of the model on one node): every request is answered once,
    both servers answer some, the ratings equal one server's, and the cache key is the one-local-server key."""
    pairs = load_demo("train").iloc[:6]
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    with LLMServer(local) as one, LLMServer(local) as two:
        both = _client([one.url, two.url], max_concurrency=2)
        got, reasons = both.rate(*args)
        assert one.requests + two.requests == len(pairs) * len(RULES)
        assert one.requests > 0 and two.requests > 0
        alone, _ = _client(one.url).rate(*args)
    assert all(r == "" for row in reasons for r in row)
    np.testing.assert_array_equal(got, alone)
    assert both.identity() == _client(one.url).identity()


def test_server_lists_are_checked_and_keyed_by_their_remote_hosts():
    with pytest.raises(ValueError, match="rater.base_url lists a server twice"):
        _client(["http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/"])
    with pytest.raises(ValueError, match=r"rater.base_url=\['127.0.0.1:8000'\]: an http\(s\) URL"):
        _client(["127.0.0.1:8000"])
    a, b = "http://gpu-a:8000/v1", "http://gpu-b:8000/v1"
    assert _client([a, b]).identity()["server"] == [a, b] == _client([b, a]).identity()["server"]
    assert _client(a).identity()["server"] == a


def test_a_fatal_reply_from_one_server_stops_every_worker(local):
    """A 401 from one of two servers ends the request batch with that server's address, not a hang."""
    pairs = load_demo("train").iloc[:4]
    with LLMServer(local) as good, LLMServer(local, faults=[401] * 100) as bad:
        with pytest.raises(RuntimeError, match=f"HTTP 401 from {bad.url}"):
            _client([good.url, bad.url], max_concurrency=1).rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
