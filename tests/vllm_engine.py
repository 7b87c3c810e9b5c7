"""The tiny model the real-vLLM lane serves (``.ci/vllm_lane``), and how the lane's tests find the engine.

vLLM's CPU attention takes head sizes 32, 64, 80, 96, 112, 128, ... only, so the model is a 2-layer Llama with
hidden 128 and 2 heads (head_dim 64), 1 KV head, the project's ``tiny-bpe`` tokenizer (600 tokens, a chat template)
and random fp32 weights. One construction makes the top-logprobs path (``rater=openai``) comparable: hidden dimension
0 is a constant carried through every layer (its embedding column is constant, nothing writes to it: the attention
and MLP output rows 0 are zero), and only the label tokens read it (``lm_head`` column 0), so every label token sits
well inside a top-20 window while its share among the labels still varies with the prompt.

    python tests/vllm_engine.py DIR      # writes the model directory the lane's server and tests load
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

HIDDEN, HEADS, LAYERS = 128, 2, 2
URL_ENV, MODEL_ENV = "ENCORE_VLLM_URL", "ENCORE_VLLM_MODEL"  # set by the lane: the server's /v1 URL, the model dir


def engine_config() -> dict:
    from encore.rm.tiny import tiny_causal_config

    return tiny_causal_config("llama", hidden=HIDDEN, layers=LAYERS, heads=HEADS, max_positions=2048)


def save_engine_model(directory: str | Path) -> str:
    """Write the lane's tiny Llama (weights fp32, tokenizer, config) to ``directory``; returns it."""
    import torch

    from encore.rating.hf import HFRater

    r = HFRater(model="tiny", tokenizer="tiny-bpe", config=engine_config(), device="cpu", dtype="float32").load()
    m = r._model
    labels = sorted({t for ids in r.prompts.rating_options() + r.prompts.judge_options() for t in ids})
    with torch.no_grad():
        m.model.embed_tokens.weight[:, 0] = 0.05
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        m.lm_head.weight[:, 0] = 0.0
        m.lm_head.weight[labels, 0] = 3.0
    Path(directory).mkdir(parents=True, exist_ok=True)
    m.save_pretrained(directory)
    r.tok.save_pretrained(directory)
    return str(directory)


def server_url(url: str | None = None) -> str | None:
    """``url`` (default: the lane's server, ``$ENCORE_VLLM_URL``) when it answers /health, else None (tests that
    need it skip)."""
    url = url or os.environ.get(URL_ENV)
    if not url:
        return None
    try:
        urllib.request.urlopen(url.rstrip("/").removesuffix("/v1") + "/health", timeout=5)
    except OSError:
        return None
    return url


if __name__ == "__main__":
    print(save_engine_model(sys.argv[1]))
