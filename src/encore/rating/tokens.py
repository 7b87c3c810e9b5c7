"""Rating and judge prompts as token ids, and the label tokens whose probabilities make a rating.

One class serves every LLM backend (``rater=hf``, ``rater=vllm``, ``rater=openai`` against a vLLM server), so all of
them read the same tokens: the chat template rendered once per response, the rule substituted, and the label
variants ("Yes", "ĠYes", "yes", ...) resolved from the tokenizer itself, never from hard-coded ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from encore import prompts as P
from encore.rules import Rule

log = logging.getLogger(__name__)


@dataclass
class PromptTokenizer:
    tokenizer: str  # hub id or path; ``tiny-bpe`` / ``tiny-wordpiece`` build one locally
    revision: str | None = None
    mode: str = "yes_no"
    scale_max: int = 5
    system_prompt: str | None = None
    _tok: Any = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, rater: Any) -> "PromptTokenizer":
        """The prompts of a rater config: its ``tokenizer`` (else its ``model``, at its ``revision``), mode, scale and
        system prompt."""
        own = getattr(rater, "tokenizer", None)
        return cls(own or rater.model, None if own else getattr(rater, "revision", None), rater.mode, rater.scale_max,
                   rater.system_prompt)

    @property
    def tok(self) -> Any:
        if self._tok is None:
            from transformers import AutoTokenizer

            from encore.scale.paths import resolve_model_path
            from encore.rm.tiny import resolve_tokenizer
            from encore.rm.padding import ensure_pad_token

            self._tok = ensure_pad_token(AutoTokenizer.from_pretrained(
                resolve_tokenizer(resolve_model_path(self.tokenizer)), revision=self.revision))
        return self._tok

    # ------------------------------------------------------------------ labels
    def label_ids(self, labels: list[str], cases: bool = True) -> list[list[int]]:
        """Token ids for each label: every surface variant that is a single token (e.g. "Yes", "ĠYes", "yes")."""
        out = []
        for label in labels:
            ids = []
            for v in P.variants(label, cases):
                enc = self.tok(v, add_special_tokens=False)["input_ids"]
                if len(enc) == 1 and enc[0] not in ids and enc[0] != self.tok.unk_token_id:
                    ids.append(enc[0])
            if not ids:
                raise ValueError(f"rater: label {label!r} is not a single token in {self.tokenizer}'s vocabulary in "
                                 "any of its forms; use rater.mode=scale or another model")
            out.append(ids)
        return out

    def rating_options(self) -> list[list[int]]:
        return self.label_ids(P.label_options(self.mode, self.scale_max))

    def judge_options(self) -> list[list[int]]:
        return self.label_ids(P.JUDGE_LABELS, cases=False)

    # ------------------------------------------------------------------ text -> ids
    def render(self, messages: list[dict[str, str]]) -> str:
        """Chat template when the tokenizer has one (generation prompt appended), else a plain text layout."""
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Batched (Rust) tokenisation; special tokens are added only where no chat template supplies them."""
        add = not getattr(self.tok, "chat_template", None)
        return [list(ids) for ids in self.tok(texts, add_special_tokens=add)["input_ids"]]

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenize([self.render(messages)])[0]

    def rule_prompts(self, prompt: str, response: str, rules: list[Rule]) -> list[str]:
        """The K rule prompts of one response as text. The template is rendered once with a sentinel in the rule's
        place and the rule texts substituted, which gives exactly the K renders at 1/K of the cost."""
        sentinel = "\x00ENCORE_RULE\x00"
        text = self.render(P.rule_messages(prompt, response, sentinel, self.mode, self.scale_max, self.system_prompt))
        if text.count(sentinel) != 1:  # a template that transforms content: render each prompt in full
            return [self.render(P.rule_messages(prompt, response, r.text, self.mode, self.scale_max,
                                                self.system_prompt)) for r in rules]
        return [text.replace(sentinel, r.text) for r in rules]

    def rule_ids(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> list[list[list[int]]]:
        """Token ids of the M x K rule prompts. The text before the rule is tokenised once per response and the text
        from the rule on once per rule; that split is checked against full tokenisations (all K prompts of the first
        response, the first prompt of every response) and abandoned for full tokenisation if it ever differs."""
        K = len(rules)
        texts = [self.rule_prompts(p, x, rules) for p, x in zip(prompts, responses)]
        split = [t[0].rfind(rules[0].text) for t in texts]
        heads = [t[0][:i] for t, i in zip(texts, split)]
        tails = [texts[0][k][split[0]:] for k in range(K)]
        if all(t[k][:i] == h and t[k][i:] == tails[k] for t, i, h in zip(texts, split, heads) for k in range(K)):
            head_ids, tail_ids = self.tokenize(heads), self.tokenize(tails)
            seqs = [[h + t for t in tail_ids] for h in head_ids]
            check = self.tokenize(texts[0] + [t[0] for t in texts[1:]])
            if check[:K] == seqs[0] and all(c == s[0] for c, s in zip(check[K:], seqs[1:])):
                return seqs
            log.info("rater: tokenizer merges across the rule boundary; tokenising every prompt in full")
        flat = self.tokenize([t for per in texts for t in per])
        return [flat[i * K: (i + 1) * K] for i in range(len(texts))]

    def judge_ids(self, prompts: list[str], a: list[str], b: list[str], style: str = "encore") -> list[list[int]]:
        """Judge prompts as ids; ``style`` (method.llm_judge.prompt) picks the prompt and its answer prefix."""
        prefix = P.judge_prefix(style)
        return self.tokenize([self.render(P.judge_messages(p, x, y, self.system_prompt, style)) + prefix
                              for p, x, y in zip(prompts, a, b)])


def split_too_long(lengths: list[int], max_length: int) -> tuple[list[int], list[str]]:
    """Indices of prompts that fit ``max_length`` and, for every prompt, the missing-value reason ("" if it fits)."""
    reasons = [too_long(n, max_length) for n in lengths]
    return [i for i, r in enumerate(reasons) if not r], reasons


def restricted_probs(logprobs: dict[int, float], options: list[list[int]], where: str) -> list[float]:
    """Option probabilities from an engine that sampled with ``allowed_token_ids`` = every option token and returned
    the log-probabilities of all of them *after* that restriction (vLLM with ``logprobs_mode=processed_logprobs``):
    they are p_i / Σ_allowed p_j, so any ratio of options — the rating — is exactly that of the full distribution.
    A reply with a token outside the allowed set, a missing option token, or probabilities that do not sum to one
    means the engine returned raw, unrestricted log-probabilities: refused, never read as a rating."""
    import math

    allowed = {t for ids in options for t in ids}
    extra, missing = set(logprobs) - allowed, allowed - set(logprobs)
    total = sum(math.exp(v) for v in logprobs.values())
    if extra or missing or abs(total - 1) > 1e-3:
        raise RuntimeError(f"{where}: log-probabilities are not restricted to the label tokens (extra {sorted(extra)[:5]}, "
                           f"missing {sorted(missing)[:5]}, total probability {total:.4f}); start vLLM with "
                           "--logprobs-mode processed_logprobs (in process: logprobs_mode='processed_logprobs') and "
                           "--max-logprobs at least the number of label tokens")
    return [sum(math.exp(logprobs[t]) for t in ids) for ids in options]


def too_long(n_tokens: int, max_length: int) -> str:
    """The missing-value reason every backend records for a prompt over ``max_length`` (never truncated)."""
    return f"prompt longer than rater.max_length ({n_tokens} > {max_length} tokens)" if n_tokens > max_length else ""


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common token prefix, kept at least one token short of the shortest sequence."""
    first, n = seqs[0], min(map(len, seqs)) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n
