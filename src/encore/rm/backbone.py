"""Text encoder backbones: any ``transformers`` model id or path, the embedded MiniLM, or a randomly initialised model
built from a config (tests). One forward pass per batch yields one pooled vector per text.

Pooling: ``mean`` (masked mean over tokens, encoders), ``last`` (last non-pad token, decoders) or ``cls``; ``auto``
picks ``last`` for decoder-only configs and ``mean`` otherwise. Text: ``plain`` shows "conversation, then
Assistant: response"; ``chat`` renders the conversation and response with the tokenizer's chat template (what a
Skywork / FsFairX reward model was trained on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from encore.scale.paths import EMBEDDED_MINILM, model_key, resolve_model_path

log = logging.getLogger(__name__)

def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU that supports it, else fp32 (CPU fallback)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def resolved_dtype(dtype: str, device: str = "auto") -> str:
    """The dtype a rater computes in, by its torch name (bf16 = bfloat16): ``auto`` is bf16 on a GPU that supports it,
    else float32, in rater=hf and rater=vllm alike (``rater.dtype`` means one precision in every engine), whatever
    the checkpoint's own dtype; ``device``: the rater's setting (``cpu`` computes on the CPU)."""
    gpu = device != "cpu" and torch.cuda.is_available()
    return str(pick_dtype(dtype, torch.device("cuda" if gpu else "cpu")))


def planned_bytes(dtype: str, gpu: bool) -> int:
    """Bytes per weight of ``dtype`` on a GPU (``gpu``) or the CPU; ``auto`` is bf16 on a GPU even when this machine
    has none to ask (planning for a GPU node from a laptop)."""
    if dtype == "auto" and gpu and not torch.cuda.is_available():
        return 2
    return torch.empty((), dtype=pick_dtype(dtype, torch.device("cuda" if gpu else "cpu"))).element_size()


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """hidden (B, T, D), mask (B, T) -> (B, D). ``last`` works for left and right padding alike. The mask follows
    the hidden states to their device (the last layer of a spread model may sit on another GPU than the inputs)."""
    mask = mask.to(hidden.device)
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        T = mask.shape[1]
        last = T - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)  # index of the last 1 in each row
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"model.pooling={how!r}; use mean, last, cls or auto")


@dataclass
class Encoder:
    """A pooled text encoder. ``config`` (a dict with ``model_type`` etc.) builds a random-weight model instead of
    loading ``name_or_path``; the tokenizer then comes from ``tokenizer`` (default: ``name_or_path``)."""

    name_or_path: str = EMBEDDED_MINILM
    revision: str | None = None
    tokenizer: str | None = None
    config: dict[str, Any] | None = None
    seed: int = 0
    pooling: str = "auto"
    normalize: bool = False
    max_length: int = 256
    text_format: str = "plain"
    batch_size: int = 64
    device: str = "auto"  # auto: the visible GPUs if any, else the CPU; cpu; cuda
    dtype: str = "auto"
    device_map: Any = "auto"  # inference placement (encore.scale.placement); or an accelerate device map
    max_memory: dict | None = None  # caps per device; CPU offload for the rest
    offload_folder: str | None = None
    arch: dict | None = None  # architecture numbers for planning offline; the model's own config wins when readable
    _model: Any = field(default=None, init=False, repr=False)
    _tok: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from omegaconf import OmegaConf

        for name in ("config", "max_memory", "arch", "device_map"):  # configs hand in DictConfigs; keep plain dicts
            v = getattr(self, name)
            if OmegaConf.is_config(v):
                setattr(self, name, OmegaConf.to_container(v))
        if self.config is not None:
            self.config = dict(self.config)
        if self.text_format not in ("plain", "chat"):
            raise ValueError(f"model.text_format={self.text_format!r}; use plain or chat")

    def identity(self) -> dict[str, Any]:
        """What determines the embeddings (the cache key): never the device or batch size."""
        return {"name_or_path": model_key(self.name_or_path), "revision": self.revision,
                "tokenizer": model_key(self.tokenizer),
                "config": dict(self.config) if self.config else None, "seed": self.seed if self.config else None,
                "pooling": self.resolved_pooling(), "normalize": self.normalize, "max_length": self.max_length,
                "truncation": "keep_end", **({"text_format": self.text_format} if self.text_format != "plain" else {}),
                # an explicit dtype by its torch name; ``auto`` (bf16 on a GPU, fp32 on a CPU) is the key it always was
                **({"dtype": str(pick_dtype(self.dtype, torch.device("cpu")))} if self.dtype != "auto" else {})}

    # ------------------------------------------------------------------ loading
    def arch_info(self) -> Any:
        """The backbone's architecture (no weights): see :func:`encore.scale.loading.model_arch`."""
        from encore.scale.loading import model_arch

        return model_arch(self.name_or_path, self.revision, self.config, self.arch,
                          len(self.tok) if self.config else None, "base", "model")

    def placement(self, gpus: Any, batch: int | None = None) -> Any:
        """Inference placement: weights plus one layer's activations over ``batch`` x ``max_length`` tokens (no KV
        cache: reward scoring never keeps one)."""
        from encore.scale.memory import gqa_repeat_bytes, inference_activation_bytes
        from encore.scale.placement import place_inference

        arch = self.arch_info()
        nbytes = planned_bytes(self.dtype, gpus.count > 0)
        b = batch or self.batch_size
        act = inference_activation_bytes(arch, b * self.max_length, nbytes)
        gqa = gqa_repeat_bytes(arch, b, self.max_length, nbytes)  # padded batches carry a mask: repeat_kv
        return place_inference(arch, nbytes, 0, gpus, field="model", batch_field="model.batch_size", batch=b,
                               device_map=self.device_map, max_memory=self.max_memory,
                               parts={"gqa k/v repeat (1 layer)": gqa, "activations (1 layer)": act},
                               transient=gqa + act)

    def load(self) -> "Encoder":
        """The inference copy of the backbone, placed by :mod:`encore.scale.placement` (checked before loading)."""
        if self._model is not None:
            return self
        from transformers import AutoModel

        from encore.scale.loading import load_model, target_gpus
        from encore.scale.placement import DoesNotFit

        gpus = target_gpus(self.device)
        place = self.placement(gpus)
        if not place.fits:
            raise DoesNotFit(f"backbone {self.name_or_path}: {place.summary()}")
        dtype = pick_dtype(self.dtype, torch.device("cuda" if gpus.count else "cpu"))
        self._model = load_model(AutoModel, self.name_or_path, revision=self.revision,
                                 config=self.config, vocab_size=len(self.tok) if self.config else None,
                                 seed=self.seed, dtype=dtype, place=place, offload_folder=self.offload_folder)
        if hasattr(self._model.config, "use_cache"):
            self._model.config.use_cache = False  # pooled scores never need a KV cache
        return self

    def unload(self) -> None:
        if self._model is not None:
            from encore.scale.loading import release_memory

            self._model = None
            release_memory()

    def load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        from encore.rm.tiny import resolve_tokenizer

        tok_src = resolve_tokenizer(resolve_model_path(self.tokenizer or self.name_or_path))
        from encore.rm.padding import ensure_pad_token

        tok = ensure_pad_token(AutoTokenizer.from_pretrained(tok_src, revision=None if self.tokenizer else self.revision))
        tok.truncation_side = "left"  # a saved (exported) tokenizer that truncates keeps the response, as we do
        return tok

    def new_model(self, dtype: torch.dtype | None = None) -> Any:
        """A fresh copy of the backbone on the CPU (the weights a fine-tuning run starts from), in ``dtype``
        (default: the inference dtype, ``model.dtype``)."""
        from transformers import AutoModel

        from encore.scale.loading import load_model
        from encore.scale.placement import Placement

        dtype = dtype or pick_dtype(self.dtype, pick_device(self.device))
        return load_model(AutoModel, self.name_or_path, revision=self.revision, config=self.config,
                          vocab_size=len(self.tok) if self.config else None, seed=self.seed, dtype=dtype,
                          place=Placement(True, "CPU", 0, {}))

    @property
    def model(self) -> Any:
        return self.load()._model

    @property
    def tok(self) -> Any:
        """The tokenizer alone (a fine-tuning run needs it without loading an inference copy of the model)."""
        if self._tok is None:
            self._tok = self.load_tokenizer()
        return self._tok

    def resolved_pooling(self) -> str:
        if self.pooling != "auto":
            return self.pooling
        if self.config:
            return "last" if _is_decoder_type(self.config.get("model_type", "")) else "mean"
        if self._model is not None:
            return "last" if _is_decoder_type(self._model.config.model_type) else "mean"
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(resolve_model_path(self.name_or_path), revision=self.revision)
        return "last" if _is_decoder_type(cfg.model_type) else "mean"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    # ------------------------------------------------------------------ text
    def texts(self, prompts: list[str], responses: list[str]) -> list[str]:
        """What the backbone reads for each (conversation, response)."""
        if self.text_format == "plain":
            return [format_for_backbone(p, r) for p, r in zip(prompts, responses)]
        from encore.data.pairs import to_messages

        if not self.tok.chat_template:
            raise ValueError(f"model.text_format=chat but the tokenizer of {self.name_or_path!r} has no chat template; "
                             "use model.text_format=plain")
        return [self.tok.apply_chat_template(to_messages(p) + [{"role": "assistant", "content": r.strip()}],
                                             tokenize=False) for p, r in zip(prompts, responses)]

    def prompt_texts(self, prompts: list[str]) -> list[str]:
        """The conversation alone exactly as it opens the reward model's input (template, generation header), for a
        gate that must read what the heads read."""
        if self.text_format == "plain":
            return [f"{p.strip()}\n\nAssistant:" for p in prompts]
        from encore.data.pairs import to_messages

        return [self.tok.apply_chat_template(to_messages(p), add_generation_prompt=True, tokenize=False) for p in prompts]

    def pair_texts(self, pairs: Any) -> list[str]:
        """2N texts of a pairs frame, in the order (chosen 0, rejected 0, chosen 1, ...)."""
        return self.texts([p for p in pairs["prompt"] for _ in (0, 1)],
                          [x for c, r in zip(pairs["chosen"], pairs["rejected"]) for x in (c, r)])

    def token_ids(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids for :meth:`texts` (a chat template already carries its special tokens), each at most
        ``max_length``: a longer text keeps its leading special tokens and its end, the response (see
        :mod:`encore.rm.truncation`). Returns the ids and which texts were cut."""
        from encore.rm.truncation import keep_end

        full = self.tok(texts, add_special_tokens=self.text_format == "plain", verbose=False)["input_ids"]
        special = set(self.tok.all_special_ids)
        out = [keep_end(ids, self.max_length, special) for ids in full]
        return [o[0] for o in out], [o[1] for o in out]

    def tokenize(self, texts: list[str], padding: bool | str = True) -> Any:
        """:meth:`token_ids`, padded into tensors (``padding``) or as lists."""
        ids, _ = self.token_ids(texts)
        if not padding:
            return {"input_ids": ids}
        return self.tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    # ------------------------------------------------------------------ encoding
    @torch.inference_mode()
    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(M,) texts -> (M, D) float32. Batches are sorted by length so padding is small; output keeps input order."""
        from tqdm.auto import tqdm

        from encore.scale.placement import input_device

        how = self.resolved_pooling()
        model = self.model
        dev = input_device(model)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for s in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            idx = order[s: s + self.batch_size]
            enc = self.tokenize([texts[i] for i in idx]).to(dev)
            hidden = model(**enc).last_hidden_state  # (B, T, D)
            vec = pool(hidden, enc["attention_mask"], how).float()
            if self.normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            out[idx] = vec.cpu().numpy()
        return out


def _is_decoder_type(model_type: str) -> bool:
    encoders = {"bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra", "xlm-roberta", "mpnet",
                "albert", "camembert", "modernbert", "nomic_bert"}
    return model_type not in encoders


def format_for_backbone(prompt: str, response: str) -> str:
    """How a (conversation, response) pair is shown to an encoder backbone: the conversation, then the response."""
    return f"{prompt.strip()}\n\nAssistant: {response.strip()}"
