"""Local ``transformers`` LLM rater (``rater=hf``): ratings read from next-token logits, never from generated text.

Speed comes from three things the naive loop (one prompt per forward pass, batch size 1) lacks:
1. the K rule prompts of a response share everything before the rule; that prefix is run once and its KV cache is
   repeated for the K rule suffixes;
2. many responses go through one forward pass: prefixes and suffixes left-padded, positions computed from the
   attention mask so padding changes no score, and logits computed at the last position only;
3. responses are sorted by length so padding stays small; bf16 on GPU.
Prompts longer than ``max_length`` are recorded as missing with their length, never silently truncated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from encore.backbone import pick_device, pick_dtype, resolve_model_path
from encore.rating import prompts as P
from encore.rules import Rule

log = logging.getLogger(__name__)


@dataclass
class HFRater:
    model: str
    revision: str | None = None
    tokenizer: str | None = None  # defaults to ``model``; ``tiny-bpe`` / ``tiny-wordpiece`` build one locally
    config: dict[str, Any] | None = None  # random-weight model from this config (tests, benchmarks)
    seed: int = 0
    mode: str = "yes_no"  # or "scale"
    scale_max: int = 5
    system_prompt: str | None = None
    max_length: int = 4096
    batch_size: int = 8  # responses per forward pass (x K rule suffixes)
    prefix_reuse: bool = True
    device: str = "auto"
    dtype: str = "auto"
    _model: Any = field(default=None, init=False, repr=False)
    _tok: Any = field(default=None, init=False, repr=False)
    _options: list[list[int]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        P.label_options(self.mode, self.scale_max)  # validates mode and scale
        if self.config is not None and not isinstance(self.config, dict):
            from omegaconf import OmegaConf

            self.config = OmegaConf.to_container(self.config)

    def identity(self) -> dict[str, Any]:
        """Determines the scores; batch size, prefix reuse and device do not (tests hold them to that)."""
        return {"kind": "hf", "model": self.model, "revision": self.revision, "tokenizer": self.tokenizer,
                "config": self.config, "seed": self.seed if self.config else None, "mode": self.mode,
                "scale_max": self.scale_max if self.mode == "scale" else None, "system_prompt": self.system_prompt,
                "max_length": self.max_length, "dtype": str(pick_dtype(self.dtype, pick_device(self.device))),
                "template": P.RULE_TEMPLATE}

    # ------------------------------------------------------------------ loading
    def load(self) -> "HFRater":
        if self._model is not None:
            return self
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from encore.tiny import resolve_tokenizer

        self._tok = AutoTokenizer.from_pretrained(resolve_tokenizer(resolve_model_path(self.tokenizer or self.model)),
                                                  revision=None if self.tokenizer else self.revision)
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token or self._tok.unk_token
        dev = pick_device(self.device)
        dtype = pick_dtype(self.dtype, dev)
        if self.config:
            cfg = dict(self.config)
            cfg.setdefault("vocab_size", len(self._tok))
            torch.manual_seed(self.seed)
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg)).to(dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(resolve_model_path(self.model), revision=self.revision,
                                                         dtype=dtype)
        self._model = model.to(dev).eval()
        self._options = self.resolve_labels(P.label_options(self.mode, self.scale_max))
        return self

    def resolve_labels(self, labels: list[str]) -> list[list[int]]:
        """Token ids for each label: every surface variant that is a single token (e.g. "Yes", "ĠYes", "yes")."""
        out = []
        for label in labels:
            ids = []
            for v in P.variants(label):
                enc = self._tok(v, add_special_tokens=False)["input_ids"]
                if len(enc) == 1 and enc[0] not in ids and enc[0] != self._tok.unk_token_id:
                    ids.append(enc[0])
            if not ids:
                raise ValueError(f"rater: label {label!r} is not a single token in {self.tokenizer or self.model}'s "
                                 "vocabulary in any of its forms; use rater.mode=scale or another model")
            out.append(ids)
        return out

    def render(self, messages: list[dict[str, str]]) -> str:
        """Chat template when the tokenizer has one (generation prompt appended), else a plain text layout."""
        if getattr(self._tok, "chat_template", None):
            return self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Batched (Rust) tokenisation; special tokens are added only where no chat template supplies them."""
        add = not getattr(self._tok, "chat_template", None)
        return [list(ids) for ids in self._tok(texts, add_special_tokens=add)["input_ids"]]

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenize([self.render(messages)])[0]

    def tokenize_rule_prompts(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> list[list[list[int]]]:
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

    def rule_prompts(self, prompt: str, response: str, rules: list[Rule]) -> list[str]:
        """The K rule prompts of one response as text. The template is rendered once with a sentinel in the rule's
        place and the rule texts substituted, which gives exactly the K renders at 1/K of the cost."""
        sentinel = "\x00ENCORE_RULE\x00"
        text = self.render(P.rule_messages(prompt, response, sentinel, self.mode, self.scale_max, self.system_prompt))
        if text.count(sentinel) != 1:  # a template that transforms content: render each prompt in full
            return [self.render(P.rule_messages(prompt, response, r.text, self.mode, self.scale_max,
                                                self.system_prompt)) for r in rules]
        return [text.replace(sentinel, r.text) for r in rules]

    # ------------------------------------------------------------------ forward passes
    def _option_probs(self, last_logits: torch.Tensor, options: list[list[int]] | None = None) -> np.ndarray:
        """(R, V) logits -> (R, n_options) probabilities (each option summed over its variant tokens)."""
        p = torch.softmax(last_logits.float(), dim=-1)
        return torch.stack([p[:, ids].sum(-1) for ids in options or self._options], dim=-1).cpu().numpy().astype(np.float64)

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(R,) token lists -> ids and attention mask (R, L), left-padded so every row ends in the last column."""
        L = max(map(len, seqs))
        ids = torch.full((len(seqs), L), self._tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, L - len(s):] = torch.tensor(s)
            mask[i, L - len(s):] = 1
        return ids, mask

    @torch.inference_mode()
    def forward_full(self, seqs: list[list[int]], options: list[list[int]] | None = None) -> np.ndarray:
        """One left-padded pass over whole prompts -> (R, n_options)."""
        dev = next(self._model.parameters()).device
        ids, mask = self._left_pad(seqs)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                             logits_to_keep=1).logits  # only the next-token position: (R, 1, V)
        return self._option_probs(logits[:, -1], options)

    @torch.inference_mode()
    def forward_shared(self, prefixes: list[list[int]], suffixes: list[list[list[int]]]) -> np.ndarray:
        """Prefixes (B) run once; their KV cache is repeated for the K suffixes of each -> (B, K, n_options)."""
        dev = next(self._model.parameters()).device
        B, K = len(prefixes), len(suffixes[0])
        ids, mask = self._left_pad(prefixes)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True,
                          logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(K)  # row b*K + k continues prefix b
        # Suffixes are left-padded too, so every row's last real token sits in the last column; the pads between a
        # prefix and its suffix are masked out and skipped by the position ids.
        sids, smask = self._left_pad([s for per in suffixes for s in per])  # (B*K, Ls)
        plen = mask.sum(-1).repeat_interleave(K)  # (B*K,) real prefix lengths
        spos = plen[:, None] + (smask.cumsum(-1) - 1).clamp(min=0)
        amask = torch.cat([mask.repeat_interleave(K, dim=0), smask], dim=1)
        logits = self._model(input_ids=sids.to(dev), attention_mask=amask.to(dev), position_ids=spos.to(dev),
                             past_key_values=cache, logits_to_keep=1).logits  # (B*K, 1, V)
        return self._option_probs(logits[:, -1]).reshape(B, K, -1)

    # ------------------------------------------------------------------ public API
    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]:
        """(M,) prompts and responses -> ratings (M, K) in [0, 1] and reasons (M x K; "" where rated)."""
        self.load()
        M, K = len(responses), len(rules)
        seqs = self.tokenize_rule_prompts(prompts, responses, rules)
        values = np.full((M, K), np.nan)
        reasons = [[""] * K for _ in range(M)]
        ok = []
        for i, per in enumerate(seqs):
            longest = max(map(len, per))
            if longest > self.max_length:
                reasons[i] = [f"prompt longer than rater.max_length ({longest} > {self.max_length} tokens)"] * K
            else:
                ok.append(i)
        ok.sort(key=lambda i: -len(seqs[i][0]))  # long first: similar lengths share a batch
        for s in range(0, len(ok), self.batch_size):
            idx = ok[s: s + self.batch_size]
            probs = self._probs_for([seqs[i] for i in idx])  # (b, K, n_options)
            for row, i in enumerate(idx):
                values[i] = [P.rating_from_probs(p, self.mode) for p in probs[row]]
        return values, reasons

    def _probs_for(self, batch: list[list[list[int]]]) -> np.ndarray:
        if self.prefix_reuse and len(batch[0]) > 1:
            cut = [_common_prefix(per) for per in batch]
            if min(cut) > 0:
                return self.forward_shared([per[0][:c] for per, c in zip(batch, cut)],
                                           [[s[c:] for s in per] for per, c in zip(batch, cut)])
        flat = [s for per in batch for s in per]
        return self.forward_full(flat).reshape(len(batch), len(batch[0]), -1)

    def judge(self, prompts: list[str], a: list[str], b: list[str]) -> tuple[np.ndarray, list[str]]:
        """P(A) / (P(A) + P(B)) for each (prompt, A, B) triple, read from the first answer token."""
        self.load()
        options = self.resolve_labels(["A", "B"])
        seqs = self.tokenize([self.render(P.judge_messages(p, x, y, self.system_prompt))
                              for p, x, y in zip(prompts, a, b)])
        out = np.full(len(seqs), np.nan)
        reasons = [""] * len(seqs)
        ok = [i for i, s in enumerate(seqs) if len(s) <= self.max_length]
        for i in set(range(len(seqs))) - set(ok):
            reasons[i] = f"prompt longer than rater.max_length ({len(seqs[i])} > {self.max_length} tokens)"
        ok.sort(key=lambda i: -len(seqs[i]))
        for s in range(0, len(ok), self.batch_size):
            idx = ok[s: s + self.batch_size]
            probs = self.forward_full([seqs[i] for i in idx], options)
            out[idx] = probs[:, 0] / probs.sum(-1)
        return out, reasons


def _common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common token prefix, kept at least one token short of the shortest sequence."""
    first, n = seqs[0], min(map(len, seqs)) - 1
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n
