"""The requests of a remote rater (``rater=openai`` / ``rater=vllm_server``) over one or several servers
(``rater.base_url``): routed by response, balanced by work, retried, and moved off a server that fails.

Routing. A response's K rule prompts share their conversation, and a server's prefix cache computes it once only
when all K reach that server. Work is handed out in groups (one response's K prompts; one judge prompt): a server
takes the next whole group when it has a free slot (``max_concurrency`` requests in flight) and nothing of its own
queued, so every prompt of a response goes to one server, and a server holds at most its slots plus one group: the
prompt tokens outstanding per server follow its speed (a faster server takes more groups). ``route_by_response=False``
hands out single prompts instead, from one shared queue (the behaviour before, kept for measuring what routing buys:
``.ci/vllm_lane`` prints both prefix-cache hit rates).

Failures. One attempt is bounded as a whole by ``timeout`` (httpx's own timeout bounds each read, so a server
trickling bytes could hold a request far longer). A failed attempt — connection error, timeout, HTTP 408/409/425/429
or 5xx, an HTTP 200 whose body is not JSON (HTML, truncated) or has no ``choices`` — is retried after exponential
backoff with jitter, on the least-loaded other live server where there is one. The first failure of each kind on a
server is logged in one line naming it; all are counted in one line per server at the end of the batch. A server
whose connections fail or time out ``DOWN_AFTER`` times in a row, with no answer between (dead, or hung), is down:
its queued groups move to the others and its requests in flight are retried there (logged, with the numbers). The
last live server is given up only when a request has used all its retries on it without a connection (a burst of
refused connections, or one prompt too slow for the deadline, ends no run). A down server is asked again
(``GET /models``) at the start of the next batch and used if it answers. With every server down, the batch ends: the
unanswered requests are missing with a ``transient:`` reason and :attr:`Pool.gone` says why; the rater then raises
:class:`encore.rating.engine.RaterUnavailable` with the answered ones, which the caller stores before it stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from encore.rating.store import TRANSIENT

log = logging.getLogger(__name__)
RETRY = {408, 409, 425, 429}  # timeout, conflict, too early, too many requests: worth asking again, never cached
FATAL = {401: "check the key in the environment variable rater.api_key_env", 403: "check the key's permissions",
         404: "check rater.base_url and rater.model"}
DOWN_AFTER = 3  # connection failures or timeouts in a row (no answer between) that make a server down
Parse = Callable[[dict], tuple[Any, str]]


@dataclass
class Server:
    url: str
    client: Any = None
    queue: deque = field(default_factory=deque)  # request indices handed to this server, not yet sent
    busy: int = 0  # requests in flight
    load: int = 0  # prompt tokens outstanding (queued + in flight)
    streak: int = 0  # connection failures in a row
    down: str = ""  # why it was given up ("": live)


def least_loaded(servers: list[Server], avoid: Server | None = None) -> Server | None:
    """The live server with the fewest prompt tokens outstanding, ``avoid`` only when it is the only one left."""
    live = [s for s in servers if not s.down]
    others = [s for s in live if s is not avoid] or live
    return min(others, key=lambda s: (s.load, s.busy + len(s.queue)), default=None)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (the API key) replaced, before it is cut, stored or logged."""
    return text.replace(secret, "<api key>") if secret else text


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Pool:
    """The servers of one rater, with what is known about them between batches (which are down and why)."""

    def __init__(self, urls: list[str], slots: int, max_retries: int, timeout: float, backoff_base: float,
                 backoff_max: float, route_by_response: bool = True):
        self.urls, self.slots, self.max_retries, self.timeout = urls, slots, max_retries, timeout
        self.backoff_base, self.backoff_max, self.route_by_response = backoff_base, backoff_max, route_by_response
        self.down: dict[str, str] = {}  # url -> why, kept between batches
        self.gone = ""  # after a batch: why no server was left ("" when the batch ran to its end)

    def run(self, path: str, bodies: list[dict], groups: list[list[int]], weights: list[int], parse: Parse,
            headers: dict[str, str], key: str | None = None) -> tuple[list, list[str]]:
        """Every body once (indices grouped by response; ``weights``: prompt tokens of each), answered or missing
        with a reason; a fatal reply (401, 403, 404) is raised."""
        if not self.route_by_response:
            groups = [[i] for g in groups for i in g]
        return asyncio.run(_Batch(self, path, bodies, groups, weights, parse, key).run(headers))


class _Batch:
    def __init__(self, pool: Pool, path: str, bodies: list[dict], groups: list[list[int]], weights: list[int],
                 parse: Parse, key: str | None):
        self.pool, self.path, self.bodies, self.weights, self.parse, self.key = pool, path, bodies, weights, parse, key
        self.pending: deque[list[int]] = deque(g for g in groups if g)  # groups no server has taken yet
        self.group = {i: j for j, g in enumerate(groups) for i in g}
        self.results: list[tuple[Any, str]] = [(None, "")] * len(bodies)
        self.done = [False] * len(bodies)
        self.tries = [0] * len(bodies)
        self.left = len(bodies)
        self.failed: dict[str, Counter] = {}
        self.cond = asyncio.Condition()
        self.timers: set[asyncio.Task] = set()

    async def run(self, headers: dict[str, str]) -> tuple[list, list[str]]:
        import httpx

        pool = self.pool
        pool.gone = ""
        limits = httpx.Limits(max_connections=pool.slots, max_keepalive_connections=pool.slots)
        self.servers = [Server(u, httpx.AsyncClient(base_url=u, headers=headers, timeout=pool.timeout, limits=limits),
                               down=pool.down.get(u, "")) for u in pool.urls]
        workers: list[asyncio.Task] = []
        try:
            await self.probe_down()
            if not any(not s.down for s in self.servers):
                self.abandon()
            elif self.left:
                workers = [asyncio.create_task(self.worker(s)) for s in self.servers for _ in range(pool.slots)]
                await asyncio.gather(*workers)
        finally:
            for t in [*workers, *self.timers]:
                t.cancel()
            await asyncio.gather(*workers, *self.timers, return_exceptions=True)
            for s in self.servers:
                await s.client.aclose()
        for url, kinds in self.failed.items():
            log.warning("rater: %s: %d failed attempt(s) in this batch: %s", url, sum(kinds.values()), dict(kinds))
        return [r[0] for r in self.results], [r[1] for r in self.results]

    async def probe_down(self) -> None:
        """A server found down in an earlier batch is used again if it answers now (any HTTP status)."""
        import httpx

        for s in self.servers:
            if not s.down:
                continue
            try:
                await asyncio.wait_for(s.client.get("/models"), min(self.pool.timeout, 5.0))
            except (httpx.HTTPError, TimeoutError):
                continue
            log.warning("rater: server %s answers again; it takes work again", s.url)
            s.down = ""
            self.pool.down.pop(s.url, None)

    # ------------------------------------------------------------------ scheduling
    async def worker(self, s: Server) -> None:
        while True:
            async with self.cond:
                await self.cond.wait_for(lambda: s.down or not self.left or s.queue or self.pending)
                if s.down or not self.left:
                    return
                if not s.queue:  # a whole group: every prompt of one response to this server
                    group = self.pending.popleft()
                    s.queue.extend(group)
                    s.load += sum(self.weights[i] for i in group)
                i = s.queue.popleft()
                s.busy += 1
            try:
                kind, value, why, wait = await self.attempt(s, i)
            finally:
                s.busy -= 1
                s.load -= self.weights[i]
            async with self.cond:
                self.settle(s, i, kind, value, why, wait)
                self.cond.notify_all()

    def settle(self, s: Server, i: int, kind: str, value: Any, why: str, wait: float | None) -> None:
        if self.done[i]:  # abandoned meanwhile
            return
        if kind == "ok":
            s.streak = 0
            self.finish(i, value)
            return
        if kind in ("conn", "slow"):
            s.streak += 1
        else:  # it answered, if badly: it is there
            s.streak = 0
        label = why.split(" (")[0]
        first = label not in self.failed.setdefault(s.url, Counter())
        self.failed[s.url][label] += 1
        self.tries[i] += 1
        last = [x for x in self.servers if not x.down] == [s]
        if not s.down and (s.streak >= DOWN_AFTER and not last
                           or last and kind == "conn" and self.tries[i] > self.pool.max_retries):
            self.take_down(s, why)  # the last one only once a request has used all its retries on it, unanswered
            if self.done[i]:  # that was the last server: abandon() has answered everything
                return
        target = least_loaded(self.servers, avoid=s)
        if self.tries[i] > self.pool.max_retries or target is None:
            self.finish(i, (None, f"{TRANSIENT}{label} after {self.pool.max_retries} retries"))
            return
        if first:
            log.warning("rater: %s: %s; retried on %s (later failures of this kind are counted at the end)", s.url,
                        redact(why, self.key), target.url)
        p = self.pool
        delay = min(p.backoff_max, p.backoff_base * 2 ** (self.tries[i] - 1)) * (0.5 + random.random() / 2)
        t = asyncio.create_task(self.later(i, target, max(delay, wait or 0.0)))
        self.timers.add(t)
        t.add_done_callback(self.timers.discard)

    async def later(self, i: int, target: Server, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.cond:
            if self.done[i]:
                return
            if target.down:
                target = least_loaded(self.servers)
                if target is None:  # (abandon() has answered it already; kept for safety: never a hang)
                    self.finish(i, (None, f"{TRANSIENT}no server answers"))
                    self.cond.notify_all()
                    return
            target.queue.appendleft(i)
            target.load += self.weights[i]
            self.cond.notify_all()

    def finish(self, i: int, value: tuple[Any, str]) -> None:
        if not self.done[i]:
            self.results[i], self.done[i] = value, True
            self.left -= 1

    def take_down(self, s: Server, why: str) -> None:
        s.down = self.pool.down[s.url] = why
        moved = list(s.queue)
        s.queue.clear()
        s.load = 0
        regrouped: list[list[int]] = []
        for i in moved:  # back to the front of the line, still grouped by response
            if regrouped and self.group[regrouped[-1][-1]] == self.group[i]:
                regrouped[-1].append(i)
            else:
                regrouped.append([i])
        self.pending.extendleft(reversed(regrouped))
        live = [x.url for x in self.servers if not x.down]
        if live:
            log.warning("rater: server %s is down (%s %d times in a row): its %d queued request(s) move to %s, its %d "
                        "in flight are retried there", s.url, why, s.streak, len(moved), ", ".join(live), s.busy)
        else:
            self.abandon()

    def abandon(self) -> None:
        """No live server: every request without an answer is missing for this run (transient: never cached)."""
        self.pool.gone = "no server of rater.base_url answers: " + "; ".join(
            f"{s.url} ({s.down})" for s in self.servers)
        log.error("rater: %s", self.pool.gone)
        for i, d in enumerate(self.done):
            if not d:
                self.finish(i, (None, f"{TRANSIENT}no server answers"))

    # ------------------------------------------------------------------ one attempt
    async def attempt(self, s: Server, i: int) -> tuple[str, Any, str, float | None]:
        """(kind, value, why, retry-after): ``ok`` with the parsed (value, reason) or a final HTTP answer; ``retry``
        (the server answered, badly); ``slow`` (no whole answer within the deadline); ``conn`` (no connection)."""
        import httpx

        try:  # the deadline covers connecting, sending and reading the whole body
            r = await asyncio.wait_for(s.client.post(self.path, json=self.bodies[i]), self.pool.timeout)
        except (TimeoutError, httpx.TimeoutException):
            return "slow", None, f"timeout (no whole answer within rater.timeout={self.pool.timeout:g} s)", None
        except httpx.TransportError as e:
            return "conn", None, f"connection error ({type(e).__name__})", None
        if r.status_code == 200:
            try:
                payload = r.json()
                if not isinstance(payload, dict) or not isinstance((payload.get("choices") or [None])[0], dict):
                    raise KeyError("choices")
                return "ok", self.parse(payload), "", None
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                text = " ".join(r.text[:80].split())
                return "retry", None, f"malformed reply (HTTP 200, {type(e).__name__}; body starts {text!r})", None
        if r.status_code in FATAL:
            raise RuntimeError(f"rater: HTTP {r.status_code} from {s.url}: {FATAL[r.status_code]}")
        if r.status_code not in RETRY and r.status_code < 500:  # the server echoes what it likes: never the key
            return "ok", (None, f"HTTP {r.status_code}: {redact(r.text, self.key)[:200]}"), "", None
        return "retry", None, f"HTTP {r.status_code}", _retry_after(r.headers.get("retry-after"))
