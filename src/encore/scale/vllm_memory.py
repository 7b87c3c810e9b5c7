"""What vLLM 0.32 holds on each GPU before its KV cache, and the KV-cache tokens left: its own accounting, read in its
source (``vllm/v1/worker/gpu_worker.py`` ``Worker.determine_available_memory``), term by term, for one
tensor-parallel rank. Pure arithmetic on an :class:`~encore.scale.arch.Arch`; ``experiments/gpu_check.py`` sets it
beside what the engine reports on a GPU.

    budget     = ceil(total_memory · gpu_memory_utilization)                    (v1/worker/utils.py request_memory)
    non_kv     = weights + persistent + non_torch + profile_peak + cuda_graphs  (determine_available_memory)
    kv_blocks  = (budget - non_kv) // (layers · block_size · 2 · kv_heads_rank · head_dim · kv_bytes)
                                                      (v1/core/kv_cache_utils.py get_kv_cache_config_from_groups)
    kv_tokens  = kv_blocks · block_size   (one block is the BlockPool's null block: usable = kv_tokens - block_size)

The terms (``T`` = ``max_num_batched_tokens``, ``R`` = ``max_num_seqs``, ``H`` hidden, ``I`` intermediate, ``V``
vocabulary, ``t`` the tensor-parallel size, ``b`` the model dtype's bytes):

- **weights**: ``n_params / t`` (plus the copy of one KV head's projections each rank keeps when ``t`` exceeds the KV
  heads: ``QKVParallelLinear``) · b — ``model_runner.model_memory_usage``, measured after loading.
- **persistent**: the Triton top-k/top-p sampler's row buffer, ``min(R, SMs) · V`` fp32
  (``v1/sample/ops/topk_topp_triton.py`` ``_TRITON_BUFFER_CACHE``, kept after the profile run).
- **non_torch**: memory outside torch's allocator that appears after the worker's snapshot (kernel modules, cuBLAS
  handles); NCCL and the custom all-reduce buffers are allocated before the snapshot (``init_device`` calls
  ``init_worker_distributed_environment`` first), so they come out of the ``1 - gpu_memory_utilization`` share, not
  the budget. :data:`NON_TORCH` is an assumption (vLLM logs "non_torch_memory takes 0.16GiB" on an H100).
- **profile_peak**: ``memory_profiling``'s ``transient_peak_headroom`` (torch's peak minus what stays allocated) of
  ``GPUModelRunner.profile_run``: ``_dummy_run(T, is_profile=True)`` over ``min(T, R)`` dummy requests, then
  ``_dummy_sampler_run`` on their ``R`` last hidden states. The larger of
    forward  = T · b · max(2H + 3I/t,  2H + (q_rank + 2 kv_rank + q_rank) · head_dim)   (one decoder layer of
               ``model_executor/models/llama.py``: residual and normed input beside gate_up (2I/t) and SiLU·mul
               (I/t), or beside qkv and the attention output), and
    sampler  = T·H·b (the dummy run's hidden states, still held) + 2·R·H·b + R·V·b (logits) + R·V·4 · n_fp32,
               n_fp32 = 4 with ``logprobs_mode="processed_logprobs"`` (what encore starts: fp32 logits, their
               log_softmax, the softmax probs and the exponential noise ``q``, all live in ``forward_native`` and
               ``random_sample``), else 3 (``v1/sample/sampler.py``, ``v1/sample/ops/topk_topp_sampler.py``).
- **cuda_graphs**: ``profile_cudagraph_memory`` (counted against the budget:
  ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` defaults to 1): the graph pool of the largest capture size (the
  forward formula at that many tokens) plus, per captured graph, :data:`GRAPH_BYTES_PER_LAYER` · layers (an
  assumption: vLLM measures it by capturing two sizes; its logs show ~24 MiB per graph of 64-layer models,
  vllm-project/vllm#50780, 0.36 GiB for 16 graphs in gpustack/runner#251). Sizes
  (``VllmConfig._set_cudagraph_sizes``): 1, 2, 4, multiples of 8 below 256, multiples of 16 up to ``min(2R, 512)``,
  capped at T; captured twice under the default ``FULL_AND_PIECEWISE`` (PIECEWISE for mixed batches, FULL for
  decode batches of at most R requests); none with ``enforce_eager``.

Defaults (``EngineArgs.get_batch_defaults``, ``vllm.LLM``): T = 16,384 and R = 1,024 on GPUs of at least 70 GiB but
A100s, T = 8,192 and R = 256 below; R is capped at T (``_set_default_max_num_batched_tokens_and_max_num_seqs``).
The CUDA block size is 16 (``CacheConfig.DEFAULT_BLOCK_SIZE``). vLLM itself refuses to start when the KV cache holds
less than one ``max_model_len`` request besides the null block (``check_enough_kv_cache_memory``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from encore.scale.arch import Arch

GIB, MIB = 2 ** 30, 2 ** 20
NON_TORCH = int(0.16 * GIB)  # assumption: vLLM's "non_torch_memory takes 0.16GiB" on single H100s (gpu_check measures)
GRAPH_BYTES_PER_LAYER = 3 * MIB // 8  # assumption: ~24 MiB per captured graph of a 64-layer model in vLLM's logs
SAMPLER_SMS = 132  # streaming multiprocessors of an H100 SXM / H200: the Triton sampler's programs
CUDA_BLOCK_SIZE = 16


@dataclass(frozen=True)
class VllmEngine:
    """The engine settings vLLM's memory depends on, as vLLM 0.32 resolves them (:func:`vllm_engine`)."""

    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int = CUDA_BLOCK_SIZE
    cudagraph_sizes: tuple[int, ...] = ()  # () with enforce_eager
    graph_modes: int = 2  # FULL_AND_PIECEWISE: every size captured as PIECEWISE and as FULL
    processed_logprobs: bool = True
    kv_cache_memory_bytes: int | None = None  # vLLM skips profiling and takes this for the KV cache


def default_batch(gpu_memory: int, gpu_name: str = "") -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) ``EngineArgs.get_batch_defaults`` gives ``vllm.LLM`` on a GPU of
    ``gpu_memory`` bytes named ``gpu_name``."""
    if gpu_memory >= 70 * GIB and "a100" not in gpu_name.lower():  # H100, H200; B200 (>= 160 GiB): the same numbers
        return 16384, 1024
    return 8192, 256


def cudagraph_sizes(max_num_seqs: int, max_num_batched_tokens: int, ceiling: int = 512) -> tuple[int, ...]:
    """The batch sizes vLLM 0.32 captures by default (``VllmConfig._set_cudagraph_sizes``; ``ceiling`` 1024 on
    Blackwell)."""
    top = min(max_num_seqs * 2, ceiling, max_num_batched_tokens)
    sizes = [s for s in (1, 2, 4) if s <= top] + list(range(8, min(top + 1, 256), 8)) + list(range(256, top + 1, 16))
    if max_num_batched_tokens <= top:
        sizes.append(max_num_batched_tokens)
    return tuple(sorted(set(sizes)))


def vllm_engine(gpu_memory: int, gpu_name: str = "", engine_kwargs: dict | None = None,
                max_model_len: int | None = None) -> VllmEngine:
    """The engine ``vllm.LLM(**engine_kwargs)`` starts on this GPU: vLLM's defaults where a setting is not given."""
    kw = dict(engine_kwargs or {})
    tokens, seqs = default_batch(gpu_memory, gpu_name)
    own_tokens = kw.get("max_num_batched_tokens")
    tokens = int(own_tokens) if own_tokens else tokens
    if not own_tokens and max_model_len:
        tokens = min(tokens, seqs * max_model_len)  # vLLM: never more than max_num_seqs full sequences
    seqs = int(kw["max_num_seqs"]) if kw.get("max_num_seqs") else min(seqs, tokens)
    comp = kw.get("compilation_config") or {}
    if kw.get("enforce_eager"):
        sizes: tuple[int, ...] = ()
    elif isinstance(comp, dict) and comp.get("cudagraph_capture_sizes"):
        sizes = tuple(sorted({int(s) for s in comp["cudagraph_capture_sizes"] if int(s) <= tokens}))
    else:
        ceiling = int(comp.get("max_cudagraph_capture_size") or 512) if isinstance(comp, dict) else 512
        sizes = cudagraph_sizes(seqs, tokens, ceiling)
    mem = kw.get("kv_cache_memory_bytes")
    return VllmEngine(tokens, seqs, int(kw.get("block_size") or CUDA_BLOCK_SIZE), sizes,
                      processed_logprobs=kw.get("logprobs_mode", "processed_logprobs") in (
                          "processed_logprobs", "processed_logits"),
                      kv_cache_memory_bytes=int(mem) if mem else None)


def kv_heads_per_rank(arch: Arch, t: int) -> int:
    """``ModelConfig.get_num_kv_heads``: ``max(1, kv_heads // t)``."""
    return max(1, arch.n_kv_heads // t)


def weight_bytes(arch: Arch, nbytes: int, t: int) -> int:
    """One rank's weights: 1/t of them, plus the copy of one KV head's projections when ``t`` > KV heads."""
    kv = kv_heads_per_rank(arch, t)
    copies = 2 * arch.n_layers * arch.hidden * arch.head_dim * max(0.0, kv - arch.n_kv_heads / t)
    return int((arch.n_params / t + copies) * nbytes)


def forward_peak(arch: Arch, nbytes: int, t: int, tokens: int) -> int:
    """Live activations of one decoder layer over ``tokens`` tokens on one rank (the module docstring's
    ``forward``)."""
    q = arch.n_heads // t
    mlp = 2 * arch.hidden + 3 * -(-arch.intermediate // t)
    attn = 2 * arch.hidden + (2 * q + 2 * kv_heads_per_rank(arch, t)) * arch.head_dim
    return tokens * nbytes * max(mlp, attn)


def sampler_peak(arch: Arch, nbytes: int, engine: VllmEngine) -> int:
    """The sampler warm-up's live tensors (the module docstring's ``sampler``)."""
    r, v = min(engine.max_num_seqs, engine.max_num_batched_tokens), arch.vocab
    n_fp32 = 4 if engine.processed_logprobs else 3
    return (engine.max_num_batched_tokens * arch.hidden * nbytes + 2 * r * arch.hidden * nbytes + r * v * nbytes
            + r * v * 4 * n_fp32)


def vllm_non_kv_bytes(arch: Arch, t: int, nbytes: int, engine: VllmEngine) -> dict[str, int]:
    """Bytes vLLM holds on each of ``t`` GPUs before its KV cache, by term (the module docstring); with
    ``kv_cache_memory_bytes`` set vLLM still profiles but does not subtract, so only the weights are returned then."""
    weights = weight_bytes(arch, nbytes, t)
    if engine.kv_cache_memory_bytes:
        return {"weights": weights}
    r = min(engine.max_num_seqs, engine.max_num_batched_tokens)
    graphs = 0
    if engine.cudagraph_sizes:
        n = len(engine.cudagraph_sizes) * engine.graph_modes
        graphs = forward_peak(arch, nbytes, t, max(engine.cudagraph_sizes)) + n * arch.n_layers * GRAPH_BYTES_PER_LAYER
    return {"weights": weights,
            "sampler buffer": min(r, SAMPLER_SMS) * arch.vocab * 4,
            "non-torch": NON_TORCH,
            "profile peak": max(forward_peak(arch, nbytes, t, engine.max_num_batched_tokens),
                                sampler_peak(arch, nbytes, engine)),
            "cuda graphs": graphs}


def kv_bytes_per_block(arch: Arch, t: int, kv_bytes: int, block_size: int) -> int:
    """One block of every layer's K and V on one rank (``AttentionSpec.page_size_bytes`` · layers)."""
    return arch.n_layers * block_size * 2 * kv_heads_per_rank(arch, t) * arch.head_dim * kv_bytes


def vllm_kv_blocks(arch: Arch, t: int, nbytes: int, total_memory: int, gpu_memory_utilization: float,
                   engine: VllmEngine, kv_bytes: int | None = None) -> int:
    """``cache_config.num_gpu_blocks`` vLLM allocates on a GPU of ``total_memory`` bytes (0 when nothing is left)."""
    if engine.kv_cache_memory_bytes:
        avail = engine.kv_cache_memory_bytes
    else:
        non_kv = sum(vllm_non_kv_bytes(arch, t, nbytes, engine).values())
        avail = math.ceil(total_memory * gpu_memory_utilization) - non_kv
    return max(0, avail) // kv_bytes_per_block(arch, t, kv_bytes or nbytes, engine.block_size)


def vllm_kv_tokens(arch: Arch, t: int, nbytes: int, total_memory: int, gpu_memory_utilization: float,
                   engine: VllmEngine, kv_bytes: int | None = None) -> int:
    """KV-cache tokens per GPU: ``num_gpu_blocks · block_size`` (what vLLM logs as its KV cache size)."""
    return vllm_kv_blocks(arch, t, nbytes, total_memory, gpu_memory_utilization, engine, kv_bytes) * engine.block_size


def vllm_starts(kv_tokens: int, block_size: int, max_model_len: int) -> bool:
    """vLLM's own floor (``check_enough_kv_cache_memory``): one ``max_model_len`` request beside the null block."""
    return kv_tokens // block_size - 1 >= -(-max_model_len // block_size)


def describe_engine(engine: VllmEngine) -> dict[str, Any]:
    return {"max_num_batched_tokens": engine.max_num_batched_tokens, "max_num_seqs": engine.max_num_seqs,
            "block_size": engine.block_size, "cuda_graph_sizes": len(engine.cudagraph_sizes)}
