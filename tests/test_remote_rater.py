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
    # the failed response is asked again whole, but only its failed rating is new: the counts add up (issue 33)
    assert (rep2["n_new"], rep2["n_cached"], again.n_missing) == (1, 4 * 2 * len(RULES) - 1, 0)


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


# ---------------------------------------------------------------------- routing and failures (issues 32, 33)
# These run against tests/llm_server.py, a stand-in for vLLM's HTTP surface: they prove where requests go and what a
# bad answer or a dead server does to a run, not what vLLM's prefix cache saves (measured on two real `vllm serve`
# servers by .ci/vllm_lane, tests/test_vllm_engine.py::test_routing_by_response_raises_the_prefix_cache_hit_rate).
SIX = load_demo("train").iloc[:6]
THREE = RULES + [Rule("c", "The response protects private information.")]


def _args(pairs=SIX, rules=THREE):
    return list(pairs["prompt"]), list(pairs["chosen"]), rules


def _response_of(body) -> str:
    return body["messages"][-1]["content"].rsplit("[RULE]", 1)[0]  # the prompt without its rule


def test_every_prompt_of_a_response_goes_to_one_server(local):
    """Two servers: each response's K rule prompts all land on one of them (so its prefix cache computes the shared
    conversation once), both servers take responses, and the ratings are one server's. Stand-in servers: this proves
    where the prompts go, not what vLLM's prefix cache saves (the lane's real-server hit rates do)."""
    with LLMServer(local) as one, LLMServer(local) as two:
        got, _ = _client([one.url, two.url], max_concurrency=2).rate(*_args())
        where = {}
        for srv in (one, two):
            for body in srv.bodies:
                where.setdefault(_response_of(body), set()).add(srv.url)
        alone, _ = _client(one.url).rate(*_args())
    assert len(where) == len(SIX) and all(len(s) == 1 for s in where.values()), where
    assert {u for s in where.values() for u in s} == {one.url, two.url}
    np.testing.assert_array_equal(got, alone)


def test_a_faster_server_takes_more_responses(local):
    """Balance by work: a server takes a response's prompts only when it has a free slot, so the one answering
    faster takes more responses, each whole (stand-in servers, one slowed by 0.3 s a request)."""
    with LLMServer(local) as fast, LLMServer(local, every=("slow", 1), slow_s=0.3) as slow:
        _client([fast.url, slow.url], max_concurrency=1).rate(*_args())
        by = {srv.url: {_response_of(b) for b in srv.bodies} for srv in (fast, slow)}
    assert not by[fast.url] & by[slow.url] and len(by[fast.url]) + len(by[slow.url]) == len(SIX)
    assert len(by[fast.url]) > len(by[slow.url]) >= 1, by


def test_every_token_id_prompt_of_a_response_goes_to_one_server(local):
    """The same for rater=vllm_server's token-id prompts (/v1/completions), what the SLURM recipe's copies get
    (stand-in servers: where the prompts go, not vLLM's cache)."""
    with LLMServer(local) as one, LLMServer(local) as two:
        _client([one.url, two.url], max_concurrency=2, vllm_extensions=True, tokenizer="tiny-bpe").rate(*_args())
        where = {}
        for srv in (one, two):
            for body in srv.bodies:
                where.setdefault(local.tok.decode(body["prompt"]).rsplit("[RULE]", 1)[0], set()).add(srv.url)
    assert len(where) == len(SIX) and all(len(s) == 1 for s in where.values()), where
    assert {u for s in where.values() for u in s} == {one.url, two.url}


def test_the_shared_queue_is_still_there_for_measuring(local):
    """rater.route_by_response=false: single prompts from one shared queue (what .ci/vllm_lane measures against;
    stand-in servers, one slowed so the other takes more)."""
    with LLMServer(local) as one, LLMServer(local, faults=["slow"] * 3, slow_s=0.3) as two:
        _client([one.url, two.url], max_concurrency=2, route_by_response=False).rate(*_args())
        split = {_response_of(b) for b in one.bodies} & {_response_of(b) for b in two.bodies}
    assert split  # some response's prompts went to both


def test_least_loaded_server_takes_a_retry():
    from encore.rating.routing import Server, least_loaded

    a, b, c = Server("a", load=50), Server("b", load=10), Server("c", load=0, down="gone")
    assert least_loaded([a, b, c]) is b and least_loaded([a, b, c], avoid=b) is a
    assert least_loaded([b, c], avoid=b) is b and least_loaded([c]) is None


@pytest.mark.parametrize("fault", ["truncated", "html", "garbage"])
def test_a_broken_http_200_is_retried_not_raised_nor_stored(local, fault):
    """HTTP 200 with a body cut in half, an HTML page, or JSON without choices: a failure of that request, asked
    again; never a crash (today: JSONDecodeError) nor a rating stored as missing (today: "response has no logprobs").
    The stand-in makes the broken bodies; what a real proxy or server sends when it breaks may differ in form."""
    pairs = SIX.iloc[:2]
    with LLMServer(local, faults=[fault]) as srv:
        v, reasons = _client(srv.url, max_concurrency=1).rate(*_args(pairs))
        ref, _ = _client(srv.url).rate(*_args(pairs))
    assert all(r == "" for row in reasons for r in row)
    np.testing.assert_array_equal(v, ref)


def test_a_server_answering_truncated_json_every_third_request_loses_nothing(local, caplog):
    """Two servers, one cutting every 3rd answer in half: every rating arrives (the broken ones asked again on the
    other server), equal to one good server's; the log names the bad server in one line and counts its failures.
    Stand-in servers: the fault is injected, not a real server's failure."""
    with LLMServer(local) as good, LLMServer(local, every=("truncated", 3)) as bad:
        with caplog.at_level("WARNING", logger="encore.rating.routing"):
            got, reasons = _client([good.url, bad.url], max_concurrency=2).rate(*_args())
        ref, _ = _client(good.url).rate(*_args())
    assert all(r == "" for row in reasons for r in row)
    np.testing.assert_array_equal(got, ref)
    named = [r.getMessage() for r in caplog.records if bad.url in r.getMessage()]
    assert any("malformed reply" in m and f"retried on {good.url}" in m for m in named)
    assert len([m for m in named if "retried on" in m]) == 1  # one line, then counted
    assert "Traceback" not in caplog.text


def test_a_request_is_bounded_as_a_whole_by_rater_timeout(local):
    """A server trickling its answer a byte at a time over 8 s: at rater.timeout=1 the attempt ends after about 1 s
    (httpx's timeout is per read; today the request is held the whole 8 s) and the retry gets the rating. The
    stand-in trickles on purpose; a real server under load trickles less evenly."""
    import time

    pairs = SIX.iloc[:1]
    with LLMServer(local, faults=["trickle"], slow_s=8.0) as srv:
        t0 = time.perf_counter()
        v, reasons = _client(srv.url, timeout=1.0, max_concurrency=1).rate(*_args(pairs, RULES[:1]))
        took = time.perf_counter() - t0
    assert np.isfinite(v).all() and reasons == [[""]]
    assert took < 5.0, took


def test_a_server_that_dies_mid_run_has_its_work_moved(local, caplog):
    """Two servers, one gone after 3 answers (later connections refused): its queued and in-flight requests move
    to the other, named in the log; every rating arrives and equals one server's (today: its share is missing).
    The stand-in dies by closing its socket; a GPU server that hangs instead is bounded by rater.timeout only."""
    with LLMServer(local) as good, LLMServer(local, die_after=3) as dying:
        with caplog.at_level("WARNING", logger="encore.rating.routing"):
            got, reasons = _client([good.url, dying.url], max_concurrency=2).rate(*_args())
        ref, _ = _client(good.url).rate(*_args())
    assert all(r == "" for row in reasons for r in row)
    np.testing.assert_array_equal(got, ref)
    assert f"server {dying.url} is down" in caplog.text and f"move to {good.url}" in caplog.text


def test_a_server_that_hangs_is_given_up_and_its_work_moved(local, caplog):
    """Two servers, one accepting every request and never answering in time: after three timeouts in a row it is
    down, its work moves to the other, and every rating arrives. The stand-in hangs by sleeping; a real hung GPU
    server may also stop accepting connections (the dead-server case)."""
    with LLMServer(local) as good, LLMServer(local, every=("slow", 1), slow_s=20.0) as hung:
        with caplog.at_level("WARNING", logger="encore.rating.routing"):
            got, reasons = _client([good.url, hung.url], max_concurrency=2, timeout=0.5).rate(*_args())
        ref, _ = _client(good.url).rate(*_args())
    assert all(r == "" for row in reasons for r in row)
    np.testing.assert_array_equal(got, ref)
    assert f"server {hung.url} is down (timeout" in caplog.text


def test_with_every_server_gone_the_run_stops_once_and_keeps_what_was_answered(local, tmp_path):
    """The only server dies after 5 answers, inside the second chunk: the run stops with one message naming the
    server and the fix (even with rating.max_missing_share=1, which accepts any gap), the 5 answered ratings are
    stored (the open chunk's one too), and the rerun asks only for the other 19 and counts them so. (Stand-in
    server: what is proven is the client's and the store's side.)"""
    from encore.rating.engine import TooManyMissing
    from encore.rating.store import RatingStore

    pairs = SIX
    rules = RULES
    with LLMServer(local, die_after=5) as srv:
        with pytest.raises(TooManyMissing, match=rf"no server of rater.base_url answers: {srv.url}[\s\S]*19 of 24 "
                                                 r"ratings \(79%\) are missing; 5 new[\s\S]*run the same command"):
            rate_pairs(pairs, rules, _client(srv.url, max_concurrency=1), tmp_path, chunk_size=2, progress=False,
                       max_missing_share=1.0)
    stored = RatingStore(tmp_path, next(tmp_path.iterdir()).name).load()
    assert len(stored) == 5
    with LLMServer(local) as srv:
        again, rep = rate_pairs(pairs, rules, _client(srv.url), tmp_path, chunk_size=2, progress=False)
        full, _ = rate_pairs(pairs, rules, _client(srv.url), tmp_path / "fresh", chunk_size=2, progress=False)
    assert (rep["n_cached"], rep["n_new"], again.n_missing) == (5, 19, 0)
    np.testing.assert_array_equal(again.values, full.values)


def test_a_server_that_is_down_is_asked_again_at_the_next_batch(local):
    """Down in one batch (nothing listening), answering at the next: used again, not given up for good (a stand-in
    server started on the port between the two batches)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pairs = SIX.iloc[:2]
    rater = _client(f"http://127.0.0.1:{port}/v1", max_concurrency=1)
    from encore.rating.engine import RaterUnavailable

    with pytest.raises(RaterUnavailable, match="connection error"):
        rater.rate(*_args(pairs))
    with LLMServer(local, port=port) as srv:
        v, _ = rater.rate(*_args(pairs))
        assert srv.answered == 2 * len(THREE)
    assert np.isfinite(v).all()
