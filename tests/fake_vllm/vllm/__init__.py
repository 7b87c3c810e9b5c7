"""A test double of the few vLLM entry points ``encore.rating.vllm`` calls (``LLM``, ``SamplingParams``,
``TokensPrompt``), computed with a transformers model: it checks that we call vLLM's API as its documentation
describes and read its outputs correctly. It is not vLLM; tests/test_vllm.py::test_real_vllm_* runs the real engine
where a GPU and vLLM are present."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

CALLS: list = []  # every LLM(...) and generate(...) call, for the tests to inspect


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None
    logprobs: int | None = None
    allowed_token_ids: list | None = None


def TokensPrompt(prompt_token_ids):  # noqa: N802 - vLLM's TypedDict constructor
    return {"prompt_token_ids": list(prompt_token_ids)}


class LLM:
    def __init__(self, model, **kwargs):
        from transformers import AutoModelForCausalLM

        CALLS.append(("LLM", model, kwargs))
        self.kwargs = kwargs
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()

    @torch.inference_mode()
    def generate(self, prompts, sampling_params, use_tqdm=True):
        CALLS.append(("generate", len(prompts), sampling_params))
        outs = []
        for p in prompts:
            logits = self.model(input_ids=torch.tensor([p["prompt_token_ids"]])).logits[0, -1].float()
            allowed = sampling_params.allowed_token_ids
            if allowed and self.kwargs.get("logprobs_mode") == "processed_logprobs":
                masked = torch.full_like(logits, float("-inf"))
                masked[allowed] = logits[allowed]
                logits = masked
            lp = torch.log_softmax(logits, -1)
            top = torch.topk(lp, sampling_params.logprobs or 1)
            step = {int(i): SimpleNamespace(logprob=float(v), rank=r + 1, decoded_token=None)
                    for r, (v, i) in enumerate(zip(top.values, top.indices))}
            outs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=[int(top.indices[0])], logprobs=[step])]))
        return outs
