"""OpenAI-compatible rater (``rater=openai``): vLLM ``serve``, SGLang, TGI, llama.cpp server or a hosted API.

One chat-completion request per (response, rule) with ``max_tokens=1`` and ``logprobs``/``top_logprobs``; the rating
is computed from the label tokens' log-probabilities, never from generated text. Requests run concurrently (bounded
by ``max_concurrency``) and are retried with exponential backoff on 429, 5xx, timeouts and connection errors. A rating
that still fails is recorded as missing with its reason. The API key is read from the environment variable named by
``api_key_env`` at request time and is never stored in the config, the identity (cache key), logs or wandb.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from encore.rating import prompts as P
from encore.rules import Rule

log = logging.getLogger(__name__)
FATAL = {401: "check the key in the environment variable rater.api_key_env", 403: "check the key's permissions",
         404: "check rater.base_url and rater.model"}


@dataclass
class OpenAIRater:
    model: str
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "yes_no"
    scale_max: int = 5
    system_prompt: str | None = None
    top_logprobs: int = 20  # OpenAI allows 20; vLLM up to its --max-logprobs
    max_concurrency: int = 16
    max_retries: int = 5
    timeout: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    extra_body: dict[str, Any] | None = None  # passed through, e.g. vLLM sampling extensions

    def __post_init__(self) -> None:
        P.label_options(self.mode, self.scale_max)
        if self.max_concurrency < 1 or self.max_retries < 0:
            raise ValueError("rater.max_concurrency must be >= 1 and rater.max_retries >= 0")
        if self.extra_body is not None and not isinstance(self.extra_body, dict):
            from omegaconf import OmegaConf

            self.extra_body = OmegaConf.to_container(self.extra_body)

    def identity(self) -> dict[str, Any]:
        """The model and prompt determine ratings; the URL, the key and the concurrency do not."""
        return {"kind": "openai", "model": self.model, "mode": self.mode,
                "scale_max": self.scale_max if self.mode == "scale" else None, "system_prompt": self.system_prompt,
                "top_logprobs": self.top_logprobs, "template": P.RULE_TEMPLATE}

    def __repr__(self) -> str:  # never shows a key: there is none to show
        return f"OpenAIRater(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    # ------------------------------------------------------------------ public API
    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]:
        jobs = [P.rule_messages(p, x, r.text, self.mode, self.scale_max, self.system_prompt)
                for p, x in zip(prompts, responses) for r in rules]
        probs, reasons = asyncio.run(self._run(jobs, P.label_options(self.mode, self.scale_max)))
        K = len(rules)
        values = np.array([P.rating_from_probs(p, self.mode) if p is not None else np.nan for p in probs])
        return values.reshape(len(responses), K), [reasons[i * K:(i + 1) * K] for i in range(len(responses))]

    def judge(self, prompts: list[str], a: list[str], b: list[str]) -> tuple[np.ndarray, list[str]]:
        jobs = [P.judge_messages(p, x, y, self.system_prompt) for p, x, y in zip(prompts, a, b)]
        probs, reasons = asyncio.run(self._run(jobs, ["A", "B"]))
        return np.array([p[0] / sum(p) if p is not None else np.nan for p in probs]), reasons

    # ------------------------------------------------------------------ transport
    async def _run(self, jobs: list[list[dict]], labels: list[str]) -> tuple[list[list[float] | None], list[str]]:
        import httpx

        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        sem = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout,
                                     limits=limits) as client:
            results = await asyncio.gather(*(self._one(client, sem, m, labels) for m in jobs))
        return [r[0] for r in results], [r[1] for r in results]

    async def _one(self, client: Any, sem: asyncio.Semaphore, messages: list[dict],
                   labels: list[str]) -> tuple[list[float] | None, str]:
        import httpx

        body = {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                "top_logprobs": self.top_logprobs, **(self.extra_body or {})}
        reason = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            async with sem:
                try:
                    r = await client.post("/chat/completions", json=body)
                except httpx.TimeoutException:
                    reason = f"timeout after {self.max_retries} retries"
                except httpx.TransportError as e:
                    reason = f"connection error after {self.max_retries} retries ({type(e).__name__})"
                else:
                    if r.status_code == 200:
                        return _label_probs(r.json(), labels)
                    if r.status_code in FATAL:
                        raise RuntimeError(f"rater: HTTP {r.status_code} from {self.base_url}: {FATAL[r.status_code]}")
                    if r.status_code != 429 and r.status_code < 500:
                        return None, f"HTTP {r.status_code}: {r.text[:200]}"
                    reason = f"HTTP {r.status_code} after {self.max_retries} retries"
                    retry_after = _retry_after(r.headers.get("retry-after"))
            if attempt < self.max_retries:
                delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * (0.5 + random.random() / 2)
                await asyncio.sleep(max(delay, retry_after or 0.0))
        return None, reason


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _label_probs(payload: dict, labels: list[str]) -> tuple[list[float] | None, str]:
    """Sum the probabilities of the top-logprob tokens that spell each label (case and spaces ignored)."""
    try:
        first = payload["choices"][0]["logprobs"]["content"][0]
        top = first.get("top_logprobs") or [first]
    except (KeyError, IndexError, TypeError):
        return None, "response has no logprobs (does the server support logprobs/top_logprobs?)"
    probs = [0.0] * len(labels)
    for entry in top:
        tok = str(entry.get("token", "")).strip().lower()
        for j, label in enumerate(labels):
            if tok == label.lower():
                probs[j] += math.exp(float(entry["logprob"]))
    if sum(probs) == 0:
        return None, "no label token among top_logprobs (raise rater.top_logprobs)"
    return probs, ""
