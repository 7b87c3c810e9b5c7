"""vLLM's own KV cache beside the plan's prediction, and its prefix-cache hit rate for grouped vs shuffled rule
prompts, on a model of one tensor-parallel rank's shape with dummy weights (``load_format="dummy"``: vLLM builds the
model from a local ``config.json`` and fills it with random values; nothing is downloaded, no tokenizer is loaded,
prompts go in as token ids).

A rank of a ``t``-way tensor-parallel model holds ``heads / t`` attention heads, ``max(1, kv_heads // t)`` KV heads
and ``intermediate / t`` of the MLP at the full hidden size (vLLM's ``ColumnParallelLinear`` / ``RowParallelLinear``),
so a one-GPU engine of that shape (:func:`rank_config`, fewer layers so it fits) holds the same per-layer weights and
KV bytes per token as one rank; its embedding and head are whole (1/t on a rank), which the prediction for the same
config counts as vLLM does (:func:`kv_comparison` applies :mod:`encore.scale.vllm_memory` to that config at t = 1).

The hit rate is vLLM's own count: ``RequestOutput.num_cached_tokens`` (the prompt tokens served from cached blocks)
over all prompt tokens, prompts sent in order, ``chunk`` per ``generate`` call, as a queue feeding the engine would.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from encore.scale.arch import Arch
from encore.scale.vllm_memory import vllm_engine, vllm_kv_tokens, vllm_non_kv_bytes


def rank_config(arch: Arch, t: int, layers: int, max_positions: int = 8192, dtype: str = "bfloat16") -> dict:
    """A Llama ``config.json`` with one rank's shape of ``arch`` at tensor parallel ``t`` and ``layers`` layers."""
    if arch.n_heads % t or arch.intermediate % t:
        raise ValueError(f"tensor parallel {t} does not divide the model's {arch.n_heads} heads and "
                         f"{arch.intermediate} MLP width: use a size vLLM takes (encore.scale.tensor_parallel)")
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": arch.hidden,
            "intermediate_size": arch.intermediate // t, "num_hidden_layers": layers,
            "num_attention_heads": arch.n_heads // t, "num_key_value_heads": max(1, arch.n_kv_heads // t),
            "head_dim": arch.head_dim, "vocab_size": arch.vocab, "max_position_embeddings": max_positions,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": dtype,
            "bos_token_id": 0, "eos_token_id": 1}


def rank_arch(config: dict) -> Arch:
    """The :class:`Arch` of a :func:`rank_config` (parameters counted on the meta device, as the plan counts)."""
    from encore.scale.arch import config_from_dict, describe

    return describe(config_from_dict({k: v for k, v in config.items() if k != "architectures"}), "rank", "rank config")


def write_model_dir(directory: str | Path, config: dict) -> str:
    """A model directory vLLM loads with ``load_format="dummy"``: only its ``config.json``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=1))
    tmp.replace(d / "config.json")
    return str(d)


def start_engine(model_dir: str, dtype: str, max_model_len: int, gpu_memory_utilization: float = 0.9,
                 **engine_kwargs: Any) -> Any:
    """``vllm.LLM`` on the dummy-weight directory, as ``rater=vllm`` starts it (prefix caching, processed
    log-probabilities), without a tokenizer."""
    import vllm

    return vllm.LLM(model=model_dir, load_format="dummy", skip_tokenizer_init=True, dtype=dtype,
                    max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
                    enable_prefix_caching=True, logprobs_mode="processed_logprobs", seed=0, **engine_kwargs)


def engine_kv_tokens(llm: Any) -> tuple[int, int]:
    """(``cache_config.num_gpu_blocks``, ``block_size``) of a started engine, as its core reported them."""
    cache = llm.llm_engine.vllm_config.cache_config
    return int(cache.num_gpu_blocks), int(cache.block_size)


def _worker_memory(worker: Any) -> dict:  # runs inside each vLLM worker (collective_rpc)
    runner = getattr(worker, "model_runner", None)
    return {"weights": getattr(runner, "model_memory_usage", None),
            "available_kv": getattr(worker, "available_kv_cache_memory_bytes", None),
            "total_consumed": getattr(worker, "total_consumed", None),
            "peak_activation": getattr(worker, "peak_activation_memory", None),
            "cuda_graphs": getattr(worker, "cudagraph_memory_estimate", None)}


def worker_memory(llm: Any) -> dict:
    """What the (first) worker measured while profiling (GPU workers; None where a worker has no such figure)."""
    try:
        return llm.collective_rpc(_worker_memory)[0]
    except Exception as e:  # an engine without callable RPCs still has its KV blocks to compare
        return {"error": f"{type(e).__name__}: {e}"}


def kv_comparison(config: dict, llm: Any, total_memory: int, gpu_memory_utilization: float, nbytes: int,
                  gpu_name: str = "", engine_kwargs: dict | None = None, max_model_len: int | None = None) -> dict:
    """vLLM's KV-cache tokens (``num_gpu_blocks · block_size``) beside :func:`encore.scale.vllm_memory.vllm_kv_tokens`
    for the same config and engine settings; ``ratio`` = actual / predicted."""
    arch = rank_arch(config)
    engine = vllm_engine(total_memory, gpu_name, engine_kwargs, max_model_len)
    predicted = vllm_kv_tokens(arch, 1, nbytes, total_memory, gpu_memory_utilization, engine)
    blocks, block_size = engine_kv_tokens(llm)
    actual = blocks * block_size
    return {"predicted_kv_tokens": predicted, "vllm_kv_tokens": actual, "vllm_blocks": blocks,
            "block_size": block_size, "ratio": actual / predicted if predicted else None,
            "predicted_non_kv": vllm_non_kv_bytes(arch, 1, nbytes, engine), "vllm_measured": worker_memory(llm)}


def prefix_hit_rate(llm: Any, prompts: list[list[int]], chunk: int) -> float:
    """Σ ``num_cached_tokens`` / Σ prompt tokens over ``prompts`` sent in order, ``chunk`` per ``generate`` call."""
    import vllm

    params = vllm.SamplingParams(max_tokens=1, temperature=1.0, detokenize=False)
    cached = total = 0
    for i in range(0, len(prompts), chunk):
        part = prompts[i:i + chunk]
        outs = llm.generate([vllm.TokensPrompt(prompt_token_ids=p) for p in part], params, use_tqdm=False)
        cached += sum(o.num_cached_tokens or 0 for o in outs)
        total += sum(map(len, part))
    return cached / total


def ideal_hit_rate(prompts: list[list[int]], block_size: int) -> float:
    """The hit rate of a cache that never evicts (any order): each prompt reuses the full blocks it shares with an
    earlier one, never its last token (vLLM computes at least one), over all prompt tokens."""
    seen: set[tuple[int, ...]] = set()
    hits = 0
    for p in prompts:
        n = 0
        while (n + 1) * block_size <= len(p) - 1 and tuple(p[:(n + 1) * block_size]) in seen:
            n += 1
        hits += n * block_size
        seen.update(tuple(p[:(i + 1) * block_size]) for i in range(len(p) // block_size))
    return hits / sum(map(len, prompts))


def conversation_hit_rate(rule_ids: list[list[list[int]]], block_size: int) -> float:
    """The hit rate of reusing each response's conversation alone: all but the first of its K prompts reuse the full
    blocks of their common prefix (:func:`encore.rating.tokens.common_prefix`), over all prompt tokens."""
    from encore.rating.tokens import common_prefix

    hits = sum((len(per) - 1) * (common_prefix(per) // block_size) * block_size for per in rule_ids)
    return hits / sum(len(p) for per in rule_ids for p in per)


def grouped_and_shuffled(rule_ids: list[list[list[int]]], seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """The M x K rule prompts response by response (a response's K prompts together), and the same prompts shuffled."""
    grouped = [p for per in rule_ids for p in per]
    shuffled = list(grouped)
    random.Random(seed).shuffle(shuffled)
    return grouped, shuffled


def hit_rates(llm: Any, rule_ids: list[list[list[int]]], seed: int = 0) -> dict[str, float]:
    """Prefix-cache hit rates of grouped vs shuffled rule prompts, K (one response's worth) per call; the engine's
    cache is reset before each order so neither inherits the other's blocks."""
    k = len(rule_ids[0])
    grouped, shuffled = grouped_and_shuffled(rule_ids, seed)
    out = {}
    for name, order in (("grouped", grouped), ("shuffled", shuffled)):
        llm.reset_prefix_cache()
        out[name] = prefix_hit_rate(llm, order, k)
    return out


def node_layout(arch: Arch, total_memory: int, gpu_name: str, max_length: int, gpu_memory_utilization: float,
                n_gpus: int = 8) -> dict:
    """The layout ``rater=vllm`` picks for ``arch`` on a node of ``n_gpus`` of this GPU (the plan's function)."""
    from encore.scale.hardware import Gpus
    from encore.scale.tensor_parallel import place_vllm, vllm_step_tokens

    gpus = Gpus(n_gpus, total_memory, f"{n_gpus} x this GPU", name=gpu_name)
    max_len = max_length + 1
    p = place_vllm(arch, 2, "auto", gpus, max_len, gpu_memory_utilization, vllm_step_tokens(gpus, max_len))
    return {"fits": p.fits, "tensor_parallel": p.tensor_parallel, "where": p.where, "n_gpus": n_gpus}


def _shutdown(llm: Any) -> None:
    import gc

    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


def run_vllm_check(arch: Arch, rule_ids: list[list[list[int]]], work: Path, layers: int, max_length: int,
                   gpu_memory_utilization: float) -> dict:
    """On this GPU: the node layout for ``arch``, vLLM's KV cache on one rank's shape (``layers`` layers) beside the
    plan's prediction, and the hit rates of ``rule_ids`` grouped vs shuffled on a second engine whose cache holds two
    longest prompts' blocks (``num_gpu_blocks_override``, eager), so that the order decides what is evicted."""
    import os

    import torch

    props = torch.cuda.get_device_properties(0)
    total, name = int(props.total_memory), props.name
    layout = node_layout(arch, total, name, max_length, gpu_memory_utilization)
    t = layout["tensor_parallel"]
    max_len = max_length + 1
    config = rank_config(arch, t, layers, max(arch.max_positions, max_len))
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # worker_memory's RPC sends a function (local)
    llm = start_engine(write_model_dir(work / "rank", config), "bfloat16", max_len, gpu_memory_utilization)
    kv = kv_comparison(config, llm, total, gpu_memory_utilization, 2, name, None, max_len)
    _shutdown(llm)
    hit_len = max(len(s) for per in rule_ids for s in per) + 1
    blocks = 2 * (-(-hit_len // 16) + 1)
    small = write_model_dir(work / "rank-hits", rank_config(arch, t, 2, max(arch.max_positions, hit_len)))
    llm = start_engine(small, "bfloat16", hit_len, gpu_memory_utilization, enforce_eager=True,
                       num_gpu_blocks_override=blocks)
    rates = hit_rates(llm, rule_ids)
    block = engine_kv_tokens(llm)[1]
    rates["never evicted"] = ideal_hit_rate(grouped_and_shuffled(rule_ids)[0], block)
    rates["conversations"] = conversation_hit_rate(rule_ids, block)
    _shutdown(llm)
    return {"total_memory": total, "gpu": name, "layout": layout, "rank_layers": layers,
            "rank_shape": {k: config[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                  "num_key_value_heads", "head_dim", "vocab_size")},
            **kv, "hit_rates": rates, "hit_rate_blocks": blocks}
