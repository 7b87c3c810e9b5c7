"""Memory arithmetic for loading, rating with and training a model, from its :class:`~encore.scale.arch.Arch` alone.

Pure functions on numbers; every estimate is an upper bound of the largest single allocation pattern we create:

- weights: ``n_params · bytes(dtype)``.
- KV cache of the prefix-reuse rater: ``batch · K · L`` token slots (the prefix cache is repeated once per rule),
  each ``2 · layers · kv_heads · head_dim · bytes``.
- activations of one forward layer (inference): ``tokens · (2 · intermediate + 4 · hidden) · bytes`` — the gate and
  up projections of the MLP dominate; the LM head is evaluated at the last position only (``logits_to_keep=1``).
- training state per parameter: weights + gradients in the parameter dtype, AdamW's two moments in the parameter
  dtype (``adamw``) or 8-bit blocks with one fp32 scale per 256 values (``adamw_8bit``: ~2.03 bytes); sharded over
  the processes under FSDP FULL_SHARD or ZeRO-3, which also gather the largest layer (twice, with prefetch).
- training activations: with gradient checkpointing each layer keeps its input (``tokens · hidden · 2 bytes``) and
  one layer is recomputed at a time; without, every layer keeps ``tokens · (2 · intermediate + 6 · hidden)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from encore.scale.arch import Arch

DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}
OPTIM_BYTES = {"adamw": None, "adamw_8bit": 2 + 2 * 4 / 256}  # None: two moments in the parameter dtype
SHARDED = ("fsdp", "zero3")
STRATEGIES = ("single", "ddp", *SHARDED)


def dtype_bytes(name: str) -> int:
    try:
        return DTYPE_BYTES[str(name).replace("torch.", "")]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use float32, bfloat16 or float16") from None


def kv_cache_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    return tokens * arch.kv_bytes_per_token(nbytes)


def inference_activation_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    """Peak of one layer's forward over ``tokens`` token positions."""
    return tokens * (2 * arch.intermediate + 4 * arch.hidden) * nbytes


@dataclass
class TrainMemory:
    """Per-process bytes of one training configuration, by component."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def training_memory(arch: Arch, *, param_dtype: str, optim: str, strategy: str, processes: int, tokens: int,
                    gradient_checkpointing: bool, trainable_frac: float = 1.0,
                    compute_dtype: str = "bfloat16") -> TrainMemory:
    """Bytes per process to fine-tune ``arch`` (plus K heads, negligible) on micro-batches of ``tokens`` positions.

    ``trainable_frac`` < 1 is LoRA: the frozen base keeps weights only, the adapters (that fraction of the
    parameters) carry fp32 weights, gradients and Adam moments.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; use one of {STRATEGIES}")
    if optim not in OPTIM_BYTES:
        raise ValueError(f"train.optim={optim!r}; use one of {sorted(OPTIM_BYTES)}")
    pb, cb = dtype_bytes(param_dtype), dtype_bytes(compute_dtype)
    shards = processes if strategy in SHARDED else 1
    n, t = arch.n_params, int(arch.n_params * trainable_frac)
    opt_per = OPTIM_BYTES[optim] if OPTIM_BYTES[optim] is not None else 2 * pb
    if trainable_frac >= 1:
        parts = {"weights": n * pb // shards, "gradients": n * pb // shards, "optimizer": int(n * opt_per) // shards}
    else:  # LoRA: frozen base in the parameter dtype, fp32 adapters with AdamW
        parts = {"weights": n * pb // shards + t * 4, "gradients": t * 4, "optimizer": t * 8}
    if shards > 1:
        parts["gathered layers"] = 2 * arch.largest_block * cb
    if gradient_checkpointing:
        parts["activations"] = (arch.n_layers * tokens * arch.hidden * cb
                                + tokens * (2 * arch.intermediate + 6 * arch.hidden) * cb)
    else:
        parts["activations"] = arch.n_layers * tokens * (2 * arch.intermediate + 6 * arch.hidden) * cb
    return TrainMemory(parts)
