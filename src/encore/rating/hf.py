"""Local ``transformers`` LLM rater (``rater=hf``): ratings read from next-token logits, never from generated text.

Speed comes from three things the naive loop (one prompt per forward pass, batch size 1) lacks:
1. the K rule prompts of a response share everything before the rule; that prefix is run once and its KV cache is
   repeated for the K rule suffixes;
2. many responses go through one forward pass: prefixes and suffixes left-padded, positions computed from the
   attention mask so padding changes no score, and logits computed at the last position only;
3. responses are sorted by length so padding stays small; bf16 on GPU.
On a CPU two more (measured in ``benchmarks/engines.py``'s docstring): the prefix pass runs the decoder without
the LM head (only its cache is used), and grouped-query attention runs inside SDPA's kernel instead of copying each
key/value head to every query head it serves (transformers does that copy unless ``TRANSFORMERS_SDPA_FORCE_GQA``,
which it reads at each call; set here around our passes only). Both leave every rating bit for bit unchanged, as
does the suffix pass's cache, allocated once at its final length (:mod:`encore.rating.prefix_cache`).
``work`` counts what the passes computed: real and padding positions and the FLOPs of the real ones
(:mod:`encore.scale.utilisation`).
Prompts longer than ``max_length`` are recorded as missing with their length, never silently truncated.

Placement (:mod:`encore.scale.placement`): one GPU when the model and the batch's KV cache fit, else the fewest GPUs
through accelerate's ``device_map``, else an error naming the fix, decided from the config before any weight is
read. ``rater.batch_size`` is a ceiling: the placement rates with the largest batch up to it that fits (the most
copies on the node, when :mod:`encore.node.replicas` asks). ``device_map``/``max_memory``/``offload_folder`` given by
the user (e.g. CPU or disk offload) pass through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from encore.rm.backbone import pick_dtype, planned_bytes, resolved_dtype
from encore.scale.hardware import Gpus
from encore.scale.cpu_layout import gqa_in_sdpa
from encore.scale.loading import load_model, model_arch, release_memory, target_gpus
from encore.scale.memory import cache_concat_bytes, gqa_repeat_bytes, inference_activation_bytes, kv_cache_bytes
from encore.scale.paths import model_key
from encore.scale.utilisation import FlopShape, forward_flops, shared_prefix_flops
from encore.scale.placement import DoesNotFit, Placement, fill_node, input_device, place_inference
from encore import prompts as P
from encore.rating.prefix_cache import repeat_with_room
from encore.rating.tokens import PromptTokenizer, common_prefix, split_too_long
from encore.rules import Rule

log = logging.getLogger(__name__)
AUTO_BATCH = 64  # rater.batch_size=auto: the ceiling of the batch the placement chooses on GPUs (8 on a CPU)
WORK = ("tokens", "padding", "flops")  # HFRater.work: real positions computed, padding positions, FLOPs of the real


@dataclass
class HFRater:
    model: str
    revision: str | None = None
    tokenizer: str | None = None  # defaults to ``model``; ``tiny-bpe`` / ``tiny-wordpiece`` build one locally
    config: dict[str, Any] | None = None  # random-weight model from this config (tests, benchmarks)
    seed: int = 0
    mode: str = "yes_no"  # or "scale"
    scale_max: int = 5
    normalise: bool = True  # yes_no: P(Yes) / (P(Yes) + P(No)); False: the raw full-vocabulary P(Yes)
    system_prompt: str | None = None
    max_length: int = 4096
    batch_size: Any = 8  # the most responses per forward pass (x K rule suffixes); the placement may choose fewer
    prefix_reuse: bool = True
    device: str = "auto"  # auto: the visible GPUs if any, else the CPU; cpu; cuda
    dtype: str = "auto"
    device_map: Any = "auto"  # auto: decided by encore.scale.placement; or an accelerate device map / strategy name
    max_memory: dict | None = None  # e.g. {0: 70GB, cpu: 120GB}: caps per device, CPU offload for the rest
    offload_folder: str | None = None  # where disk-offloaded weights go (a temp dir when needed and unset)
    arch: dict | None = None  # architecture numbers for planning offline; the model's own config wins when readable
    n_rules: int = 10  # rules per response, for the KV-cache estimate before the rules are known
    torch_threads: ClassVar[bool] = True  # computes on this process's torch threads (encore.scale.cpu_layout)
    _model: Any = field(default=None, init=False, repr=False)
    _prompts: PromptTokenizer | None = field(default=None, init=False, repr=False)
    _options: list[list[int]] | None = field(default=None, init=False, repr=False)
    _batch: int | None = field(default=None, init=False, repr=False)  # the batch the placement chose at load
    _shape: FlopShape | None = field(default=None, init=False, repr=False)
    work: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORK, 0), init=False, repr=False)

    def __post_init__(self) -> None:
        P.label_options(self.mode, self.scale_max)  # validates mode and scale
        from omegaconf import OmegaConf

        for name in ("config", "max_memory", "arch", "device_map"):
            v = getattr(self, name)
            if OmegaConf.is_config(v):
                setattr(self, name, OmegaConf.to_container(v))
        if not self.normalise and self.mode != "yes_no":
            raise ValueError(f"rater.normalise=false with rater.mode={self.mode}: the raw probability is defined for "
                             "yes_no only (a scale rating is an expectation over its digits); use rater.normalise=true")
        b = self.batch_size
        if str(b) != "auto" and (isinstance(b, bool) or not str(b).isdigit() or int(b) < 1):
            raise ValueError(f"rater.batch_size={b!r}: use a positive integer (the most responses per forward pass) "
                             "or auto")
        if self.max_length < 2:
            raise ValueError(f"rater.max_length={self.max_length}: must be >= 2")

    def identity(self) -> dict[str, Any]:
        """Determines the scores; batch size, prefix reuse, device and placement do not (tests hold them to that).
        The dtype enters as it is resolved on this rater's device (:func:`resolved_dtype`): ``auto`` and the dtype it
        becomes share their ratings, and a CPU's float32 ratings are never read as a GPU's bf16 ones."""
        return {"kind": "hf", "model": model_key(self.model), "revision": self.revision,
                "tokenizer": model_key(self.tokenizer),
                "config": self.config, "seed": self.seed if self.config else None, "mode": self.mode,
                "scale_max": self.scale_max if self.mode == "scale" else None, "system_prompt": self.system_prompt,
                "max_length": self.max_length, "dtype": resolved_dtype(self.dtype, self.device),
                "template": P.RULE_TEMPLATE,
                **({} if self.normalise else {"normalise": False})}  # the default's key is unchanged

    # ------------------------------------------------------------------ placement and loading
    @property
    def prompts(self) -> PromptTokenizer:
        if self._prompts is None:
            self._prompts = PromptTokenizer.of(self)
        return self._prompts

    @property
    def tok(self) -> Any:
        return self.prompts.tok

    def arch_info(self) -> Any:
        return model_arch(self.model, self.revision, self.config, self.arch, len(self.tok) if self.config else None,
                          "causal_lm", "rater")

    def ceiling(self, gpus: Gpus) -> int:
        """The largest batch the placement may choose: ``rater.batch_size``, or for ``auto`` :data:`AUTO_BATCH` on
        GPUs and 8 on a CPU (where the batch decides nothing about placement)."""
        return int(self.batch_size) if str(self.batch_size) != "auto" else (AUTO_BATCH if gpus.count else 8)

    @property
    def batch(self) -> int:
        """The batch rating and judging use: the one the placement chose at :meth:`load` (the ceiling before)."""
        return self._batch or self.ceiling(Gpus(0, 0, "CPU"))

    def placement(self, gpus: Gpus, n_rules: int | None = None, seq_len: int | None = None,
                  judge: bool = False, copies: int | None = 1) -> Placement:
        """Where the model goes and at which batch (``.batch``, what :meth:`load` then rates with): the largest
        batch up to :meth:`ceiling` among those that put the most copies on ``gpus`` (``copies``: that many,
        ``rating.replicas=N``; ``None``: as many as fit), a copy on the fewest GPUs that hold it
        (:func:`encore.scale.placement.fill_node`). A ``device_map``/``max_memory`` of the user's is kept, at the
        ceiling."""
        arch, top = self.arch_info(), self.ceiling(gpus)
        at = lambda b: self._place_at(arch, b, gpus, n_rules, seq_len, judge)  # noqa: E731
        if self.device_map not in (None, "auto") or self.max_memory or not gpus.count:
            return at(top)
        return fill_node(at, top, gpus.count, copies)

    def _place_at(self, arch: Any, batch: int, gpus: Gpus, n_rules: int | None, seq_len: int | None,
                  judge: bool) -> Placement:
        """Weights plus the worst batch of ``batch`` prompts of ``seq_len`` tokens (default ``max_length``, what a
        run sizes for): for rating, ``batch · K`` rows of KV cache (the prefix cache is repeated per rule) and one
        layer's activations over the prefix pass; for judging, activations of ``batch`` whole prompts, no cache."""
        nbytes = planned_bytes(self.dtype, gpus.count > 0)
        L, K = min(seq_len or self.max_length, self.max_length), n_rules or self.n_rules
        rows = batch * (1 if judge else K)  # sequences attending over L positions at once
        cached = self.prefix_reuse and not judge
        kv = kv_cache_bytes(arch, rows * L, nbytes) if cached else 0
        cat = cache_concat_bytes(arch, rows * L, nbytes) if cached else 0
        act = inference_activation_bytes(arch, batch * L * (1 if self.prefix_reuse or judge else K), nbytes)
        gqa = gqa_repeat_bytes(arch, rows, L, nbytes)  # suffix pass: B·K rows over the whole L
        place = place_inference(arch, nbytes, kv, gpus, field="rater", batch_field="rater.batch_size", batch=batch,
                                device_map=self.device_map, max_memory=self.max_memory,
                                parts={"kv cache": kv, "kv concat (1 layer)": cat, "gqa k/v repeat (1 layer)": gqa,
                                       "activations (1 layer)": act}, transient=cat + gqa + act)
        place.batch = batch
        return place

    def load(self) -> "HFRater":
        if self._model is not None:
            return self
        from transformers import AutoModelForCausalLM

        gpus = target_gpus(self.device)
        place = self.placement(gpus)
        if not place.fits:
            raise DoesNotFit(f"rater {self.model}: {place.summary()}")
        self._batch = place.batch
        log.info("rater %s: %s, rater.batch_size %d%s", self.model, place.where, place.batch,
                 "" if place.batch == self.ceiling(gpus) else f" (the largest up to {self.ceiling(gpus)} that fits)")
        dtype = pick_dtype(self.dtype, torch.device("cuda" if gpus.count else "cpu"))
        self._model = load_model(AutoModelForCausalLM, self.model, revision=self.revision, config=self.config,
                                 vocab_size=len(self.tok), seed=self.seed, dtype=dtype, place=place,
                                 offload_folder=self.offload_folder)
        self._options = self.prompts.rating_options()
        return self

    def flop_shape(self) -> FlopShape:
        """The loaded model's shape for counting FLOPs (read once; also for a rater handed a loaded model)."""
        if self._shape is None:
            self._shape = FlopShape.from_model(self._model)
        return self._shape

    def unload(self) -> None:
        """Give the model's memory back (the judge reloads it lazily when a later stage needs it)."""
        if self._model is not None:
            self._model = None
            release_memory()

    # ------------------------------------------------------------------ forward passes
    def _option_probs(self, last_logits: torch.Tensor, options: list[list[int]] | None = None) -> np.ndarray:
        """(R, V) logits -> (R, n_options) probabilities (each option summed over its variant tokens)."""
        p = torch.softmax(last_logits.float(), dim=-1)
        return torch.stack([p[:, ids].sum(-1) for ids in options or self._options], dim=-1).cpu().numpy().astype(np.float64)

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(R,) token lists -> ids and attention mask (R, L), left-padded so every row ends in the last column."""
        L = max(map(len, seqs))
        ids = torch.full((len(seqs), L), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, L - len(s):] = torch.tensor(s)
            mask[i, L - len(s):] = 1
        return ids, mask

    @torch.inference_mode()
    def forward_full(self, seqs: list[list[int]], options: list[list[int]] | None = None) -> np.ndarray:
        """One left-padded pass over whole prompts -> (R, n_options); no KV cache is kept."""
        dev = input_device(self._model)
        ids, mask = self._left_pad(seqs)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._kernels():
            logits = self._model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                                 use_cache=False, logits_to_keep=1).logits  # only the next-token position: (R, 1, V)
        flops = sum(forward_flops(self.flop_shape(), len(s), 0, 1) for s in seqs)
        self._count(mask.numel(), flops, sum(map(len, seqs)))
        return self._option_probs(logits[:, -1], options)

    @torch.inference_mode()
    def forward_shared(self, prefixes: list[list[int]], suffixes: list[list[list[int]]]) -> np.ndarray:
        """Prefixes (B) run once; their KV cache is repeated for the K suffixes of each -> (B, K, n_options)."""
        dev = input_device(self._model)
        B, K = len(prefixes), len(suffixes[0])
        ids, mask = self._left_pad(prefixes)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with self._kernels():  # the decoder alone: the prefix's logits are never read, only its cache
            cache = self._model.base_model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                           position_ids=pos.to(dev), use_cache=True).past_key_values
        # Suffixes are left-padded too, so every row's last real token sits in the last column; the pads between a
        # prefix and its suffix are masked out and skipped by the position ids.
        sids, smask = self._left_pad([s for per in suffixes for s in per])  # (B*K, Ls)
        repeat_with_room(cache, K, sids.shape[1])  # row b*K + k continues prefix b (each layer on its own device)
        plen = mask.sum(-1).repeat_interleave(K)  # (B*K,) real prefix lengths
        spos = plen[:, None] + (smask.cumsum(-1) - 1).clamp(min=0)
        amask = torch.cat([mask.repeat_interleave(K, dim=0), smask], dim=1)
        with self._kernels():
            logits = self._model(input_ids=sids.to(dev), attention_mask=amask.to(dev), position_ids=spos.to(dev),
                                 past_key_values=cache, logits_to_keep=1).logits  # (B*K, 1, V)
        real = [(len(p), [len(x) for x in per]) for p, per in zip(prefixes, suffixes)]
        self._count(mask.numel() + smask.numel(), shared_prefix_flops(self.flop_shape(), real),
                    sum(p + sum(x) for p, x in real))
        return self._option_probs(logits[:, -1]).reshape(B, K, -1)

    def _kernels(self) -> Any:
        return gqa_in_sdpa(input_device(self._model))

    def _count(self, positions: int, flops: int, tokens: int) -> None:
        self.work["tokens"] += tokens
        self.work["padding"] += positions - tokens
        self.work["flops"] += flops

    # ------------------------------------------------------------------ public API
    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]:
        """(M,) prompts and responses -> ratings (M, K) in [0, 1] and reasons (M x K; "" where rated)."""
        self.load()
        M, K = len(responses), len(rules)
        seqs = self.prompts.rule_ids(prompts, responses, rules)
        values = np.full((M, K), np.nan)
        ok, why = split_too_long([max(map(len, per)) for per in seqs], self.max_length)
        reasons = [[r] * K for r in why]
        ok.sort(key=lambda i: -len(seqs[i][0]))  # long first: similar lengths share a batch
        for s in range(0, len(ok), self.batch):
            idx = ok[s: s + self.batch]
            probs = self._probs_for([seqs[i] for i in idx])  # (b, K, n_options)
            for row, i in enumerate(idx):
                values[i] = [P.rating_from_probs(p, self.mode, self.normalise) for p in probs[row]]
        return values, reasons

    def _probs_for(self, batch: list[list[list[int]]]) -> np.ndarray:
        if self.prefix_reuse and len(batch[0]) > 1:
            cut = [common_prefix(per) for per in batch]
            if min(cut) > 0:
                return self.forward_shared([per[0][:c] for per, c in zip(batch, cut)],
                                           [[s[c:] for s in per] for per, c in zip(batch, cut)])
        flat = [s for per in batch for s in per]
        return self.forward_full(flat).reshape(len(batch), len(batch[0]), -1)

    def judge(self, prompts: list[str], a: list[str], b: list[str],
              style: str = "encore") -> tuple[np.ndarray, list[str]]:
        """P(A) / (P(A) + P(B)) for each (prompt, A, B) triple, read from the first answer token after the prompt
        ``style``'s answer prefix."""
        self.load()
        options = self.prompts.judge_options()
        seqs = self.prompts.judge_ids(prompts, a, b, style)
        out = np.full(len(seqs), np.nan)
        ok, reasons = split_too_long(list(map(len, seqs)), self.max_length)
        ok.sort(key=lambda i: -len(seqs[i]))
        for s in range(0, len(ok), self.batch):
            idx = ok[s: s + self.batch]
            probs = self.forward_full([seqs[i] for i in idx], options)
            out[idx] = probs[:, 0] / probs.sum(-1)
        return out, reasons
