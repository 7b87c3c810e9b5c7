"""OpenAI-compatible rater (``rater=openai``): vLLM ``serve``, SGLang, TGI, llama.cpp server or a hosted API.

Generic servers: one chat-completion request per (response, rule) with ``max_tokens=1`` and ``top_logprobs``; the
rating is computed from the label tokens among the returned top log-probabilities (a label outside that window is
missing). Against ``vllm serve`` (``rater=vllm_server``: ``vllm_extensions=true``) the ratings are exact instead:
the prompt goes to ``/v1/completions`` as the token ids ``rater=hf`` would build (same tokenizer code), with vLLM's
request extensions ``allowed_token_ids`` (the label tokens), ``logprobs`` = their number and
``return_tokens_as_token_ids``; the server runs with ``--logprobs-mode processed_logprobs``, so the reply holds the
probabilities of every label token after the restriction (checked on every reply, see ``restricted_probs``).

``base_url`` may list several servers of the same model (a node split into tensor-parallel copies, as
slurm/rate_vllm_server.sbatch starts them). Every prompt of a response goes to one server, so its prefix cache
computes the shared conversation once; a faster server takes more responses; a failed request (connection error,
timeout of the whole request, 429, 5xx, a malformed HTTP 200) is retried with exponential backoff on another server,
and a server that stops answering has its work moved to the others (:mod:`encore.rating.routing`). A rating that
still fails is missing for this run with a ``transient:`` reason, which is never cached, so a rerun asks again; with no
server left, :class:`~encore.rating.engine.RaterUnavailable` carries the answered ratings to the caller, which stores
them and stops. The API key is read from the environment variable named by ``api_key_env`` at request time and is
never stored in the config, the identity (cache key), logs or wandb.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from encore import prompts as P
from encore.rating.engine import RaterUnavailable
from encore.rating.routing import FATAL, RETRY, Pool  # noqa: F401 - RETRY, FATAL: part of this module's contract
from encore.rating.tokens import PromptTokenizer, restricted_probs, split_too_long
from encore.rules import Rule

log = logging.getLogger(__name__)


@dataclass
class OpenAIRater:
    model: str
    base_url: str | list[str] = "http://127.0.0.1:8000/v1"  # or a list: copies of the model on one node
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "yes_no"
    scale_max: int = 5
    system_prompt: str | None = None
    top_logprobs: int = 20  # OpenAI allows 20; vLLM up to its --max-logprobs
    max_concurrency: int = 16  # requests in flight per server
    max_retries: int = 5
    timeout: float = 60.0  # seconds for one whole request (connect, send, the whole answer), not per read
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    extra_body: dict[str, Any] | None = None  # passed through, e.g. vLLM sampling extensions
    vllm_extensions: bool = False  # exact label probabilities from a vLLM server (token-id prompts, allowed tokens)
    tokenizer: str | None = None  # vllm_extensions: the model's tokenizer (default: ``model``), read locally
    max_length: int = 4096  # vllm_extensions: longer prompts are missing (as rater=hf)
    route_by_response: bool = True  # a response's K prompts to one server; false: one shared queue (for measuring)
    _prompts: Any = field(default=None, init=False, repr=False)
    _pool: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from omegaconf import OmegaConf

        P.label_options(self.mode, self.scale_max)
        if self.max_concurrency < 1 or self.max_retries < 0:
            raise ValueError("rater.max_concurrency must be >= 1 and rater.max_retries >= 0")
        if self.extra_body is not None and not isinstance(self.extra_body, dict):
            self.extra_body = OmegaConf.to_container(self.extra_body)
        if OmegaConf.is_config(self.base_url):
            self.base_url = OmegaConf.to_container(self.base_url)
        urls = self.base_url if isinstance(self.base_url, (list, tuple)) else [self.base_url]
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise ValueError(f"rater.base_url={self.base_url!r}: an http(s) URL such as http://127.0.0.1:8000/v1, or "
                             "a list of them ('rater.base_url=[http://127.0.0.1:8000/v1,http://127.0.0.1:8001/v1]')")
        self.urls = [u.rstrip("/") for u in urls]
        if len(set(self.urls)) != len(self.urls):
            raise ValueError(f"rater.base_url lists a server twice: {urls}")

    def identity(self) -> dict[str, Any]:
        """The model, prompt, request parameters (``extra_body``) and, for a server on another host, that server
        determine ratings. A server on this machine (localhost, 127.0.0.1, ::1) is keyed by the model it serves: its
        port is left out, so SLURM jobs that each start ``vllm serve`` on their own port share one cache, and so do
        one or several local copies. The key, the concurrency and the retry settings are not in the key."""
        base = {"kind": "openai", "model": self.model, "mode": self.mode,
                "scale_max": self.scale_max if self.mode == "scale" else None, "system_prompt": self.system_prompt,
                "template": P.RULE_TEMPLATE, **_request_identity(self.urls, self.extra_body)}
        if self.vllm_extensions:  # exact: no top-k window; the tokens are ours
            return {**base, "vllm_extensions": True, "tokenizer": self.tokenizer or self.model,
                    "max_length": self.max_length}
        return {**base, "top_logprobs": self.top_logprobs}

    @property
    def prompts(self) -> PromptTokenizer:
        if self._prompts is None:
            self._prompts = PromptTokenizer.of(self)
        return self._prompts

    def __repr__(self) -> str:  # never shows a key: there is none to show
        return f"OpenAIRater(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    # ------------------------------------------------------------------ public API
    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]:
        K = len(rules)
        if self.vllm_extensions:
            probs, reasons = self._exact(self.prompts.rule_ids(prompts, responses, rules), self.prompts.rating_options())
        else:
            jobs = [P.rule_messages(p, x, r.text, self.mode, self.scale_max, self.system_prompt)
                    for p, x in zip(prompts, responses) for r in rules]
            probs, reasons = self._chat(jobs, P.label_options(self.mode, self.scale_max), cases=True, per=K)
        values = np.array([P.rating_from_probs(p, self.mode) if p is not None else np.nan for p in probs])
        values, reasons = values.reshape(len(responses), K), [reasons[i * K:(i + 1) * K] for i in range(len(responses))]
        self._checked(values, reasons)
        return values, reasons

    def judge(self, prompts: list[str], a: list[str], b: list[str],
              style: str = "encore") -> tuple[np.ndarray, list[str]]:
        if self.vllm_extensions:
            probs, reasons = self._exact([[s] for s in self.prompts.judge_ids(prompts, a, b, style)],
                                         self.prompts.judge_options())
        elif P.judge_prefix(style):
            raise ValueError(f"method.llm_judge.prompt={style}: its answer starts with {P.judge_prefix(style)!r}, "
                             "which a chat-completions request cannot put in the assistant's mouth; use rater=hf, "
                             "rater=vllm or rater=vllm_server (token-id prompts)")
        else:
            probs, reasons = self._chat([P.judge_messages(p, x, y, self.system_prompt, style)
                                         for p, x, y in zip(prompts, a, b)], P.JUDGE_LABELS, cases=False)
        values = np.array([p[0] / sum(p) if p is not None else np.nan for p in probs])
        self._checked(values, reasons)
        return values, reasons

    def _chat(self, jobs: list[list[dict]], labels: list[str], cases: bool, per: int = 1) -> tuple[list, list[str]]:
        """Chat requests, ``per`` consecutive ones a group (a response's K rules); weighed by characters / 4 (the
        server's tokens are its own)."""
        bodies = [{"model": self.model, "messages": m, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                   "top_logprobs": self.top_logprobs, **(self.extra_body or {})} for m in jobs]
        groups = [list(range(i, min(i + per, len(jobs)))) for i in range(0, len(jobs), per)]
        weights = [sum(len(str(x.get("content", ""))) for x in m) // 4 + 1 for m in jobs]
        return self._run("/chat/completions", bodies, groups, weights,
                         lambda payload: _label_probs(payload, labels, cases))

    def _exact(self, groups: list[list[list[int]]], options: list[list[int]]) -> tuple[list, list[str]]:
        """Token-id prompts (grouped by response: its K rule prompts) to a vLLM server's /v1/completions, sampling
        restricted to the option tokens. A response whose longest prompt exceeds ``max_length`` is missing under
        every rule without a request, as in rater=hf. Returns flat lists over all prompts."""
        ok, why = split_too_long([max(map(len, g)) for g in groups], self.max_length)
        allowed = [t for ids in options for t in ids]
        bodies = [{"model": self.model, "prompt": s, "max_tokens": 1, "temperature": 1.0, "top_p": 1.0,
                   "top_k": -1, "logprobs": len(allowed), "allowed_token_ids": allowed,
                   "return_tokens_as_token_ids": True, "add_special_tokens": False, **(self.extra_body or {})}
                  for i in ok for s in groups[i]]
        sizes = [len(groups[i]) for i in ok]
        starts_sent = np.cumsum([0] + sizes)
        got, sent_why = self._run("/completions", bodies,
                                  [list(range(a, a + n)) for a, n in zip(starts_sent, sizes)],
                                  [len(s) for i in ok for s in groups[i]],
                                  lambda payload: _exact_probs(payload, options, self._where))
        probs: list = [None] * sum(map(len, groups))
        reasons = [r for g, r in zip(groups, why) for _ in g]
        starts = np.cumsum([0] + [len(g) for g in groups])
        flat = [starts[i] + k for i in ok for k in range(len(groups[i]))]
        for j, p, r in zip(flat, got, sent_why):
            probs[j], reasons[j] = p, r
        return probs, reasons

    # ------------------------------------------------------------------ transport
    @property
    def _where(self) -> str:
        return ", ".join(self.urls)

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(self.urls, self.max_concurrency, self.max_retries, self.timeout, self.backoff_base,
                              self.backoff_max, self.route_by_response)
        return self._pool

    def _run(self, path: str, bodies: list[dict], groups: list[list[int]], weights: list[int],
             parse: Callable[[dict], tuple[Any, str]]) -> tuple[list, list[str]]:
        """Every body once, a response's prompts (``groups``) to one server (:mod:`encore.rating.routing`)."""
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return self.pool.run(path, bodies, groups, weights, parse, headers, key)

    def _checked(self, values: Any, reasons: list) -> None:
        """After a batch with no server left: the answered part goes to the caller, which stores it and stops."""
        if self.pool.gone:
            raise RaterUnavailable(self.pool.gone, values, reasons)


def _request_identity(urls: list[str], extra_body: dict | None) -> dict[str, Any]:
    """The parts of a request beyond the prompt that change a rating; empty for local servers and no extras (so
    those keys are the ones they always were). Servers on other hosts are named (one as a string, several as their
    sorted list: the order requests happen to take does not change a rating)."""
    from urllib.parse import urlsplit

    remote = sorted({f"{u.scheme}://{u.netloc}{u.path}" for u in map(urlsplit, urls)
                     if u.hostname not in ("localhost", "127.0.0.1", "::1")})
    server = {} if not remote else {"server": remote[0] if len(remote) == 1 else remote}
    return {**server, **({"extra_body": extra_body} if extra_body else {})}


def _label_probs(payload: dict, labels: list[str], cases: bool = True) -> tuple[list[float] | None, str]:
    """Sum the probabilities of the top-logprob tokens that spell each label, surrounding spaces ignored and, with
    ``cases``, case too: the token set ``PromptTokenizer.label_ids`` reads for rater=hf (the judge's "A"/"B" keep
    their case, as lower-case "a" is a common word, not an answer)."""
    try:
        first = payload["choices"][0]["logprobs"]["content"][0]
        top = first.get("top_logprobs") or [first]
    except (KeyError, IndexError, TypeError):
        return None, "response has no logprobs (does the server support logprobs/top_logprobs?)"
    probs = [0.0] * len(labels)
    for entry in top:
        tok = str(entry.get("token", "")).strip()
        for j, label in enumerate(labels):
            if (tok.lower() == label.lower()) if cases else tok == label:
                probs[j] += math.exp(float(entry["logprob"]))
    if sum(probs) == 0:
        return None, "no label token among top_logprobs (raise rater.top_logprobs)"
    return probs, ""


def _exact_probs(payload: dict, options: list[list[int]], where: str) -> tuple[list[float] | None, str]:
    """Option probabilities from a vLLM /v1/completions reply made with ``return_tokens_as_token_ids``."""
    try:
        top = payload["choices"][0]["logprobs"]["top_logprobs"][0]
    except (KeyError, IndexError, TypeError):
        return None, "response has no logprobs (is the server vLLM, started with --max-logprobs >= label tokens?)"
    by_id = {int(str(tok).split(":", 1)[1]): float(lp) for tok, lp in top.items()
             if str(tok).startswith("token_id:")}
    if len(by_id) != len(top):
        raise RuntimeError(f"rater: {where} did not return token ids (return_tokens_as_token_ids); is it vLLM?")
    return restricted_probs(by_id, options, f"rater: {where}"), ""
