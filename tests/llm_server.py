"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: serves a tiny HF causal LM's next-token
log-probabilities through /v1/chat/completions and, with the request extensions of ``vllm serve`` (token-id prompts,
``allowed_token_ids``, ``return_tokens_as_token_ids``, under ``--logprobs-mode processed_logprobs`` or the default
``raw_logprobs``), through /v1/completions; GET /health answers 200. Faults can be injected (429, 500, slow replies).
It stands in for a vLLM server's HTTP surface, not for vLLM's engine."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


class LLMServer:
    def __init__(self, rater, faults: list | None = None, slow_s: float = 2.0, logprobs_mode: str = "processed_logprobs",
                 port: int = 0):
        self.rater = rater.load()
        self.logprobs_mode = logprobs_mode
        self.faults = list(faults or [])  # consumed in order: 401, 429, 500, "slow", "echo"
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.requests = 0
        self.seen_auth: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._send(200, {}) if self.path == "/health" else self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    server.seen_auth.add(self.headers.get("Authorization", ""))
                    fault = server.faults.pop(0) if server.faults else None
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
                self._send(200, server.complete_ids(body) if self.path.endswith("/completions") and
                           not self.path.endswith("chat/completions") else server.complete(body))

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
