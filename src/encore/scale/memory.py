"""Memory arithmetic for loading, rating with and training a model, from its :class:`~encore.scale.arch.Arch` alone.

Pure functions on numbers; every estimate is an upper bound of the largest single allocation pattern we create
(``T`` token positions, ``h`` hidden, ``i`` intermediate, ``q = heads · head_dim``, ``kv = kv_heads · head_dim``):

- weights: ``n_params · bytes(dtype)``.
- KV cache of the prefix-reuse rater: ``batch · K · L`` token slots (the prefix cache is repeated once per rule),
  each ``2 · layers · kv_heads · head_dim · bytes``; plus one layer's copy while ``DynamicCache.update`` runs
  ``torch.cat([old, new])`` in the suffix pass (:func:`cache_concat_bytes`).
- SDPA's grouped-query fallback: with an attention mask (ours always has one: left padding) transformers'
  ``sdpa_attention_forward`` passes ``enable_gqa`` only when the mask is None, else ``repeat_kv`` copies K and V of
  the layer to all query heads when more than one query position is computed: ``2 · rows · kv_len · q · bytes``
  for the one layer running (:func:`gqa_repeat_bytes`).
- activations of one decoder layer (inference): the residual and its normed copy ``2 · T · h``, plus the larger of
  attention (q, k, v, rotated q and k, output: ``3 · T · q + 3 · T · kv``) and the SwiGLU MLP (``act(gate)``, ``up``,
  their product: ``3 · T · i``); the LM head is evaluated at the last position only (``logits_to_keep=1``).
- training state per parameter: weights + gradients in the parameter dtype, AdamW's two moments in the parameter
  dtype (``adamw``) or 8-bit blocks with one fp32 scale per 256 values (``adamw_8bit``: ~2.03 bytes); sharded over
  the processes under FSDP FULL_SHARD or ZeRO-3, which also gather the largest layer (twice, with prefetch).
  accelerate's FSDP2 preparation upcasts trainable parameters to fp32 under mixed precision (weights, gradients and
  AdamW moments then take 4 bytes each); DDP (accelerate's default ``gradient_as_bucket_view=False``) keeps its
  gradient buckets as a second copy of the gradients; a model without ``get_input_embeddings`` leaves its embedding
  matrix in FSDP2's root unit, gathered from the first forward to the end of backward.
- training activations per layer kept for backward: ``T · (9 · h + 3 · kv + 4 · i)`` (+ ``2 · T · q`` for K and V
  repeated to the query heads under GQA); with gradient checkpointing each layer keeps its input (``T · h``) and
  one layer is recomputed at a time.
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


def cache_concat_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    """One layer's K and V over ``tokens`` slots: the new tensor ``torch.cat`` builds beside the old one."""
    return tokens * 2 * arch.n_kv_heads * arch.head_dim * nbytes


def gqa_repeat_bytes(arch: Arch, rows: int, kv_len: int, nbytes: int) -> int:
    """K and V of one layer repeated to every query head (``repeat_kv``): ``2 · rows · kv_len · heads · head_dim ·
    bytes``; 0 without grouped-query attention (nothing to repeat)."""
    if arch.n_heads == arch.n_kv_heads:
        return 0
    return 2 * rows * kv_len * arch.n_heads * arch.head_dim * nbytes


def attention_activation_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    """q, k, v, the rotated q and k and the attention output of one layer: ``T · (3 · q + 3 · kv) · bytes``."""
    return tokens * (3 * arch.n_heads + 3 * arch.n_kv_heads) * arch.head_dim * nbytes


def mlp_activation_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    """SwiGLU ``down(act(gate(x)) * up(x))`` at its peak: ``act(gate)``, ``up`` and their product, ``3 · T · i``."""
    return 3 * tokens * arch.intermediate * nbytes


def inference_activation_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    """Peak of one layer's forward over ``tokens`` positions: residual + normed input, plus the larger block."""
    return (2 * tokens * arch.hidden * nbytes
            + max(attention_activation_bytes(arch, tokens, nbytes), mlp_activation_bytes(arch, tokens, nbytes)))


def training_layer_activation_bytes(arch: Arch, tokens: int, nbytes: int) -> int:
    """What one layer keeps for backward: ``T · (9 · h + 3 · kv + 4 · i)`` (RMSNorm inputs in fp32, the normed
    inputs, q, k, v and their rotations, the attention output, gate, act(gate), up and their product), plus
    ``2 · T · q`` when K and V are repeated to the query heads."""
    kv = arch.n_kv_heads * arch.head_dim
    per = 9 * arch.hidden + 3 * kv + 4 * arch.intermediate
    if arch.n_heads != arch.n_kv_heads:
        per += 2 * arch.n_heads * arch.head_dim
    return tokens * per * nbytes


@dataclass
class TrainMemory:
    """Per-process bytes of one training configuration, by component."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def training_memory(arch: Arch, *, param_dtype: str, optim: str, strategy: str, processes: int, tokens: int,
                    gradient_checkpointing: bool, trainable_frac: float = 1.0,
                    compute_dtype: str = "bfloat16", embedding_gathered: bool = True) -> TrainMemory:
    """Bytes per process to fine-tune ``arch`` (plus K heads, negligible) on micro-batches of ``tokens`` positions,
    with mixed precision in ``compute_dtype`` (as every GPU run is).

    ``trainable_frac`` < 1 is LoRA: the frozen base keeps weights only, the adapters (that fraction of the
    parameters) carry fp32 weights, gradients and Adam moments. ``embedding_gathered``: the model has no
    ``get_input_embeddings``, so FSDP2 keeps its ``vocab · hidden`` embedding gathered in the root unit.
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
        if strategy == "fsdp" and pb < 4:  # fp32 weights and gradients (+ fp32 AdamW moments) instead of pb bytes
            extra = 2 * (4 - pb) + (2 * (4 - pb) if OPTIM_BYTES[optim] is None else 0)
            parts["fp32 upcast (FSDP2)"] = n * extra // shards
    else:  # LoRA: frozen base in the parameter dtype, fp32 adapters with AdamW
        parts = {"weights": n * pb // shards + t * 4, "gradients": t * 4, "optimizer": t * 8}
    if strategy == "ddp" and processes > 1:
        parts["ddp gradient buckets"] = t * (pb if trainable_frac >= 1 else 4)
    if shards > 1:
        parts["gathered layers"] = 2 * arch.largest_block * cb
        if strategy == "fsdp" and embedding_gathered:
            parts["embedding (gathered, FSDP2 root)"] = arch.vocab * arch.hidden * cb
    layer = training_layer_activation_bytes(arch, tokens, cb)
    if gradient_checkpointing:
        parts["activations"] = arch.n_layers * tokens * arch.hidden * cb + layer
    else:
        parts["activations"] = arch.n_layers * layer
    return TrainMemory(parts)
