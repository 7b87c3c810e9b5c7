"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: serves a tiny HF causal LM's next-token
log-probabilities through /v1/chat/completions and, with the request extensions of ``vllm serve`` (token-id prompts,
``allowed_token_ids``, ``return_tokens_as_token_ids``, under ``--logprobs-mode processed_logprobs`` or the default
``raw_logprobs``), through /v1/completions; GET /health and GET /v1/models answer 200. Faults can be injected: in
order (``faults``: 401, 429, 500, "slow", "echo", and the broken HTTP 200s "truncated" (JSON cut in half), "html" (an
HTML page), "garbage" (JSON without ``choices``), "trickle" (the right answer, a byte at a time over ``slow_s``)),
on every n-th request (``every=("truncated", 5)``), or by dying (``die_after=n``: request n + 1 is dropped without an
answer and the server stops listening, so later connections are refused). It records each request body
(``bodies``) for routing checks. It stands in for a vLLM server's HTTP surface, not for vLLM's engine (its scheduler,
its prefix cache: those are measured against the real server in tests/test_vllm_engine.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


class LLMServer:
    def __init__(self, rater, faults: list | None = None, slow_s: float = 2.0, logprobs_mode: str = "processed_logprobs",
                 port: int = 0, every: tuple[str, int] | None = None, die_after: int | None = None):
        self.rater = rater.load()
        self.logprobs_mode = logprobs_mode
        self.faults = list(faults or [])  # consumed in order
        self.every, self.die_after = every, die_after
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.requests = 0
        self.answered = 0  # requests answered with a well-formed rating
        self.bodies: list[dict] = []
        self.seen_auth: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                ok = self.path in ("/health", "/v1/models")
                self._send(200, {"data": []}) if ok else self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    n = server.requests
                    server.seen_auth.add(self.headers.get("Authorization", ""))
                    fault = server.faults.pop(0) if server.faults else None
                    if server.every and n % server.every[1] == 0:
                        fault = server.every[0]
                    dead = server.die_after is not None and n > server.die_after
                if dead:  # gone mid-run: no answer, and nothing listens any more
                    if n == server.die_after + 1:
                        threading.Thread(target=server.stop, daemon=True).start()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault in ("truncated", "html", "garbage", "trickle"):
                    self._broken(fault, body)
                    return
                if fault == "slow":
                    time.sleep(server.slow_s)
                elif fault in (401, 429, 500):
                    self._send(fault, {"error": {"message": "injected"}})
                    return
                elif fault == "echo":  # a 400 whose body repeats the request's headers (some proxies do)
                    self._send(400, {"error": {"message": "bad request from "
                                               f"Authorization: {self.headers.get('Authorization')}",
                                               "headers": dict(self.headers)}})
                    return
                answer = self._answer(body)
                with server.lock:  # before the answer leaves: a client that has it sees it counted
                    server.bodies.append(body)
                    server.answered += 1
                self._send(200, answer)

            def _answer(self, body):
                ids = self.path.endswith("/completions") and not self.path.endswith("chat/completions")
                return server.complete_ids(body) if ids else server.complete(body)

            def _broken(self, fault, body):
                if fault == "html":
                    self._send(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
                elif fault == "garbage":
                    self._send(200, {"object": "error", "detail": "upstream busy"})
                elif fault == "truncated":
                    data = json.dumps(self._answer(body)).encode()
                    self._send(200, data[:len(data) // 2])
                else:  # trickle: the whole answer, but a byte at a time over slow_s seconds
                    data = json.dumps(self._answer(body)).encode()
                    self._head(200, "application/json", len(data))
                    try:
                        for b in range(len(data)):
                            self.wfile.write(data[b:b + 1])
                            self.wfile.flush()
                            time.sleep(server.slow_s / len(data))
                    except OSError:  # the client gave up
                        pass

            def _head(self, code, ctype, n):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(n))
                self.end_headers()

            def _send(self, code, obj, ctype="application/json"):
                data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self._head(code, ctype, len(data))
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # 16 concurrent connections per client never overflow the backlog
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @torch.inference_mode()
    def complete(self, body: dict) -> dict:
        r = self.rater
        ids = r.prompts.encode(body["messages"])
        with self.lock:  # one forward at a time on the shared model
            logits = r._model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        lp = torch.log_softmax(logits, -1)
        top = torch.topk(lp, min(int(body.get("top_logprobs", 5)), lp.numel()))
        entries = [{"token": r.tok.decode([int(i)]), "logprob": float(v)} for v, i in zip(top.values, top.indices)]
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": entries[0]["token"]},
                             "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]}}]}

    @torch.inference_mode()
    def complete_ids(self, body: dict) -> dict:
        """/v1/completions on token ids, as vLLM: logprobs of the top ``logprobs`` tokens, after restricting to
        ``allowed_token_ids`` in processed mode, of the unrestricted distribution in raw mode."""
        with self.lock:
            logits = self.rater._model(input_ids=torch.tensor([body["prompt"]])).logits[0, -1].float()
        allowed = body.get("allowed_token_ids")
        if allowed and self.logprobs_mode == "processed_logprobs":
            masked = torch.full_like(logits, float("-inf"))
            masked[allowed] = logits[allowed]
            logits = masked
        lp = torch.log_softmax(logits, -1)
        top = torch.topk(lp, min(int(body.get("logprobs") or 1), lp.numel()))
        name = (lambda i: f"token_id:{i}") if body.get("return_tokens_as_token_ids") else self.rater.tok.decode
        entries = {name(int(i)): float(v) for v, i in zip(top.values, top.indices)}
        return {"choices": [{"index": 0, "text": "", "logprobs": {"tokens": [next(iter(entries))],
                                                                  "top_logprobs": [entries]}}]}

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __exit__(self, *exc):
        self.stop()
