"""What a model is, without its weights: its ``transformers`` config (the hub's or a local one when it can be read,
else the architecture numbers recorded in our config files) and its parameter count, taken by building the model
on the meta device. Every memory estimate starts here, before anything is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class ArchError(ValueError):
    """A model whose architecture cannot be known here; the message names the field and the fix."""


@dataclass(frozen=True)
class Arch:
    """The numbers the memory arithmetic needs. ``n_params`` counts the module we load (a causal LM for a rater, the
    bare backbone for a reward model); ``largest_block`` is the biggest repeated layer (what FSDP gathers at once)."""

    name: str
    source: str
    model_type: str
    n_params: int
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    largest_block: int
    max_positions: int = 0  # the context the config declares (max_position_embeddings); 0: not declared

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V of every layer for one token: 2 · layers · kv_heads · head_dim · bytes."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype_bytes


@lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    """False when offline is requested or the endpoint does not answer a TCP connect within 2 s (a blocked network
    otherwise costs ~30 s of retries per config)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=2).close()
        return True
    except OSError:
        return False


def read_config(name_or_path: str, revision: str | None = None, recorded: dict | None = None,
                field: str = "model") -> tuple[Any, str]:
    """The model's config and where it came from: a local path or the local hub cache, then the hub when reachable,
    then the numbers recorded in ``<field>.arch`` (used only when its ``_name_or_path`` names this model)."""
    from transformers import AutoConfig

    from encore.scale.paths import resolve_model_path

    path = resolve_model_path(name_or_path)
    errors = []
    for online in (False, True):
        if online and not _hub_reachable():
            errors.append("hub not reachable")
            break
        try:
            return AutoConfig.from_pretrained(path, revision=revision, local_files_only=not online), (
                "hub config" if online else "local config")
        except (OSError, ValueError) as e:
            errors.append(str(e).splitlines()[0][:120])
    if recorded:
        rec = dict(recorded)
        named = rec.pop("_name_or_path", None)
        if named == name_or_path:
            return AutoConfig.for_model(**rec), f"recorded in {field}.arch (config not readable here)"
        log.warning("%s.arch describes %r, not %r: ignored", field, named, name_or_path)
    raise ArchError(f"{field}: cannot read the config of {name_or_path!r} ({'; '.join(errors)}). Fix: make it readable "
                    f"(a local path, or the hub cache: huggingface-cli download {name_or_path} config.json), or record "
                    f"its architecture as {field}.arch={{_name_or_path: {name_or_path}, model_type: ..., hidden_size: ...}}")


def config_from_dict(config: dict, vocab_size: int | None = None) -> Any:
    """A random-weight model's config from its dict (tests, tiny models); the vocabulary comes from the tokenizer."""
    from transformers import AutoConfig

    cfg = dict(config)
    if vocab_size is not None:
        cfg.setdefault("vocab_size", vocab_size)
    return AutoConfig.for_model(**cfg)


def describe(config: Any, name: str, source: str, head: str = "causal_lm") -> Arch:
    """Count parameters of ``AutoModelForCausalLM`` (``head="causal_lm"``) or ``AutoModel`` (``"base"``) built from
    ``config`` on the meta device: no weights are read or allocated."""
    return _describe(json.dumps(config.to_dict(), sort_keys=True, default=str), name, source, head)


@lru_cache(maxsize=32)
def _describe(config_json: str, name: str, source: str, head: str) -> Arch:
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    d = json.loads(config_json)
    cfg = AutoConfig.for_model(**{k: v for k, v in d.items() if k != "transformers_version"})
    with init_empty_weights():
        model = (AutoModelForCausalLM if head == "causal_lm" else AutoModel).from_config(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    blocks = [sum(p.numel() for p in b.parameters()) for m in model.modules()
              if isinstance(m, torch.nn.ModuleList) and len(m) > 1 for b in m]
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    get = lambda *names, default=None: next((getattr(text, n) for n in names if getattr(text, n, None)), default)  # noqa: E731
    hidden = int(get("hidden_size", "n_embd", "d_model"))
    heads = int(get("num_attention_heads", "n_head", default=1))
    return Arch(name=name, source=source, model_type=str(cfg.model_type), n_params=int(n_params),
                n_layers=int(get("num_hidden_layers", "n_layer", "num_layers")), hidden=hidden,
                intermediate=int(get("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)), n_heads=heads,
                n_kv_heads=int(get("num_key_value_heads", default=heads)),
                head_dim=int(get("head_dim", default=hidden // heads)), vocab=int(get("vocab_size", default=0)),
                largest_block=int(max(blocks, default=n_params)),
                max_positions=int(get("max_position_embeddings", "n_positions", "max_sequence_length", default=0)))
