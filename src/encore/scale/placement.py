"""Where a model goes, decided before it is loaded: one GPU when it fits, else the fewest GPUs that hold it through
accelerate's ``device_map``, else a :class:`DoesNotFit` that names the exact override that fixes it. Every stage
that loads a model asks here first (rater, judge, backbone, fine-tuning), and ``experiments/plan.py`` prints the same
decisions for a whole experiment. Placement never enters a cache key: the same model gives the same ratings
wherever its layers sit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from encore.scale.arch import Arch
from encore.scale.hardware import GB, Gpus, fmt_bytes, host_ram
from encore.scale.memory import SHARDED, TrainMemory, training_memory


class DoesNotFit(RuntimeError):
    """A stage that cannot fit on the hardware it was given; the message carries the fix."""


@dataclass
class Placement:
    fits: bool
    where: str  # human-readable: "GPU 0", "GPUs 0-3 (device_map=auto)", "CPU", ...
    need: int  # bytes over all devices
    parts: dict[str, int]
    n_gpus: int = 0
    device_map: Any = None  # what from_pretrained gets (None: load on the CPU)
    max_memory: dict | None = None
    fix: str = ""
    batch: int = 0  # the batch it was placed for (rater=hf: the batch the run uses)
    tensor_parallel: int = 0  # vLLM's tensor_parallel_size it was placed for (the size the engine starts with)

    def load_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.device_map is not None:
            kw["device_map"] = self.device_map
        if self.max_memory:
            kw["max_memory"] = self.max_memory
        return kw

    def summary(self) -> str:
        parts = " + ".join(f"{k} {fmt_bytes(v)}" for k, v in self.parts.items() if v)
        verdict = "fits" if self.fits else "DOES NOT FIT"
        out = f"{parts} = {fmt_bytes(self.need)} -> {verdict}: {self.where}"
        return out + (f"\n    fix: {self.fix}" if self.fix else "")


def balance_buffer(arch: Arch, nbytes: int) -> int:
    """Weights a GPU may get above ``weights / n`` under ``device_map="auto"``: transformers' ``get_balanced_memory``
    (what ``from_pretrained`` runs for "auto") gives every GPU but the last ``size / n + 1.25 · max(largest
    no-split block, largest leaf)``; the largest leaf of a decoder is its ``vocab · hidden`` embedding or LM head."""
    return int(1.25 * max(arch.largest_block, arch.vocab * arch.hidden)) * nbytes


def _gpu_range(n: int) -> str:
    return "GPU 0" if n == 1 else f"GPUs 0-{n - 1}"


def place_inference(arch: Arch, nbytes: int, reserve: int, gpus: Gpus, *, field: str, batch_field: str | None = None,
                    batch: int = 1, device_map: Any = "auto", max_memory: dict | None = None,
                    parts: dict[str, int] | None = None, transient: int = 0) -> Placement:
    """Weights (``n_params · nbytes``) plus ``reserve`` bytes (the KV cache of a ``batch``, spread with the layers)
    plus ``transient`` bytes (one layer's activations and copies, held in full by whichever GPU runs that layer) on
    ``gpus``: ``n`` GPUs hold it when ``(weights + reserve) / n + transient + largest block`` fits each.
    ``device_map``/``max_memory`` other than the default are the user's and pass through."""
    w = arch.n_params * nbytes
    parts = {"weights": w, **(parts or {"kv + activations": reserve + transient})}
    need = w + reserve + transient
    if device_map not in (None, "auto") or max_memory:
        return Placement(True, f"as given: {field}.device_map={device_map}, {field}.max_memory={max_memory}", need,
                         parts, gpus.count, device_map if device_map not in (None, "auto") else "auto", max_memory)
    if gpus.count == 0:
        ram = host_ram()
        ok = not ram or need <= 0.9 * ram
        return Placement(ok, "CPU", need, parts, fix="" if ok else (
            f"needs {fmt_bytes(need)} of host memory, this machine has {fmt_bytes(ram)}: run it on GPUs "
            f"(check first with python experiments/plan.py <same overrides> plan.gpus=8x80GB)"))
    for n in range(1, gpus.count + 1):  # the fewest GPUs that hold it; layers are whole, so one block of slack
        per = (w + reserve) / n + transient + (balance_buffer(arch, nbytes) if n > 1 else 0)
        if per <= gpus.usable:
            if n == 1:
                return Placement(True, "GPU 0", need, parts, 1, {"": 0})
            cap = {i: int(gpus.usable - reserve / n - transient) for i in range(n)}
            return Placement(True, f"{_gpu_range(n)} (device_map=auto over {n} of {gpus.count})", need, parts, n,
                             "auto", cap)
    return Placement(False, f"{gpus.count} x {fmt_bytes(gpus.usable)} usable", need, parts, gpus.count,
                     fix=_inference_fix(arch, w, reserve, transient, gpus, field, batch_field, batch, nbytes))


def batch_that_fits(arch: Arch, w: int, reserve: int, transient: int, n: int, usable: int, batch: int,
                    nbytes: int) -> int:
    """The largest batch below ``batch`` whose share (both ``reserve`` and ``transient`` grow with the batch) fits
    ``n`` GPUs of ``usable`` bytes; 0 when even batch 1 does not."""
    slack = balance_buffer(arch, nbytes) if n > 1 else 0
    room = usable - w / n - slack  # per GPU, for the batch
    per_item = (reserve / n + transient) / max(batch, 1)
    return max(0, min(batch - 1, int(room // per_item))) if room > 0 and per_item > 0 else 0


def _inference_fix(arch: Arch, w: int, reserve: int, transient: int, gpus: Gpus, field: str, batch_field: str | None,
                   batch: int, nbytes: int) -> str:
    """The override that makes it fit: a smaller batch when only the KV cache and activations overflow; else more
    GPUs, or offloading the weights that do not fit to host RAM at batch 1 (runs, slowly)."""
    slack = balance_buffer(arch, nbytes) if gpus.count > 1 else 0
    b = batch_that_fits(arch, w, reserve, transient, gpus.count, gpus.usable, batch, nbytes)
    if batch_field and batch > 1 and b >= 1:
        return f"{batch_field}={b} (the KV cache and activations of {batch} do not fit)"
    size = f"{gpus.memory / GB:.0f}GB"
    k = next((k for k in range(gpus.count + 1, 1025) if (w + reserve) / k + transient + balance_buffer(arch, nbytes)
              <= gpus.usable), None)
    more = f"run on {k} such GPUs (plan.gpus={k}x{size})" if k else "more GPUs"
    one = reserve / max(batch, 1) / gpus.count + transient / max(batch, 1)  # what batch 1 keeps beside the weights
    gpu_cap = int((gpus.usable - one - slack) // GB)
    if gpu_cap < 1:
        return more
    cpu = math.ceil((w - gpus.count * gpu_cap * GB) * 1.1 / GB)
    caps = ", ".join(f"{i}: {gpu_cap}GB" for i in range(gpus.count))
    offload = (f"{batch_field}=1 " if batch_field else "") + f"{field}.max_memory='{{{caps}, cpu: {cpu}GB}}'"
    tp = next((t for t in (1, 2, 4, 8, 16, 32, 64) if w / t + 1.5 * GB <= 0.85 * gpus.memory
               and arch.n_heads % t == 0), None)
    vllm = f"; or rater=vllm (tensor parallel over about {tp} such GPUs)" if field == "rater" and tp else ""
    return f"{more}; or on these GPUs, offload {cpu} GB of weights to host RAM (runs, slowly): {offload}{vllm}"


def fill_node(place_at: Callable[[int], Placement], ceiling: int, count: int, copies: int | None = None) -> Placement:
    """The placement, at the batch it records (``.batch``), that puts the most copies of a model on ``count`` GPUs:
    batches from ``ceiling`` down, each placed by ``place_at``; the largest batch among those giving the most copies
    (``count // n_gpus``). ``copies``: a number the user fixed (``rating.replicas=N``): the largest batch whose copy
    fits ``count // copies`` GPUs. Nothing fits: the placement at batch 1, whose fix names the fewest GPUs that hold a
    copy, or offload."""
    best = None
    for b in range(ceiling, 0, -1):
        p = place_at(b)
        if not p.fits or not count:
            if p.fits:
                return p  # no GPU: one copy, and the batch does not decide where it goes
            continue
        n = count // max(p.n_gpus, 1)
        if copies is not None and n >= copies:
            return p
        if best is None or n > count // max(best.n_gpus, 1):
            best = p
        if p.n_gpus <= 1:
            break  # a smaller batch cannot put more copies on the node
    return best or place_at(1)


@dataclass
class TrainSetup:
    """What the memory of a fine-tuning run depends on besides the model."""

    param_dtype: str
    optim: str
    strategy: str  # single, ddp, fsdp, zero3
    processes: int
    batch_size: int  # pairs per process per micro-step (train.global_batch split by encore.rm.batches.batch_split)
    grad_accum: int
    max_length: int
    gradient_checkpointing: bool
    lora_r: int = 0
    # MultiHeadRM without get_input_embeddings: FSDP2 keeps the embedding gathered in its root unit
    embedding_gathered: bool = True

    def memory(self, arch: Arch) -> TrainMemory:
        frac = lora_fraction(arch, self.lora_r) if self.lora_r else 1.0
        return training_memory(arch, param_dtype=self.param_dtype, optim=self.optim, strategy=self.strategy,
                               processes=self.processes, tokens=2 * self.batch_size * self.max_length,
                               gradient_checkpointing=self.gradient_checkpointing, trainable_frac=frac,
                               embedding_gathered=self.embedding_gathered)


def lora_fraction(arch: Arch, r: int) -> float:
    """LoRA on every linear layer of every block: r · (7·hidden + 2·kv_dim + 3·intermediate) per layer."""
    kv = arch.n_kv_heads * arch.head_dim
    return arch.n_layers * r * (7 * arch.hidden + 2 * kv + 3 * arch.intermediate) / arch.n_params


def place_training(arch: Arch, setup: TrainSetup, gpus: Gpus) -> Placement:
    """Each training process holds one GPU (or the CPU); the largest per-process footprint must fit in it. The
    ``setup.processes`` of a launch (accelerate's ``num_processes``) are spread over ``gpus.nodes`` machines of
    ``gpus.count`` GPUs each."""
    mem = setup.memory(arch)
    cap = gpus.usable if gpus.count else int(0.9 * host_ram())
    where = (f"{setup.processes} process(es), {setup.strategy}, "
             + (f"{fmt_bytes(mem.total)} of {fmt_bytes(cap)} per GPU" if gpus.count else "CPU"))
    if gpus.count and -(-setup.processes // gpus.nodes) > gpus.count:  # processes per machine vs its GPUs
        most = gpus.count * gpus.nodes
        return Placement(False, where, mem.total, mem.parts, setup.processes,
                         fix=f"launch at most {gpus.count} processes per machine (accelerate launch --num_processes "
                             f"{most}" + (f" --num_machines {gpus.nodes})" if gpus.nodes > 1 else ")"))
    if not cap or mem.total <= cap:
        return Placement(True, where, mem.total, mem.parts, max(setup.processes, 1) if gpus.count else 0)
    return Placement(False, where, mem.total, mem.parts, setup.processes, fix=_training_fix(arch, setup, gpus, cap))


def _training_fix(arch: Arch, s: TrainSetup, gpus: Gpus, cap: int) -> str:
    from dataclasses import replace

    def fits(**kw: Any) -> bool:
        return replace(s, **kw).memory(arch).total <= cap

    if s.strategy not in SHARDED and (s.optim, s.param_dtype) != ("adamw_8bit", "bfloat16") and not s.lora_r \
            and fits(optim="adamw_8bit", param_dtype="bfloat16"):
        return "train=finetune_1gpu (bf16 weights, 8-bit AdamW with stochastic rounding: one GPU, as in the paper)"
    if gpus.count > 1 and s.strategy not in SHARDED and s.optim == "adamw" and fits(strategy="fsdp",
                                                                                   processes=gpus.count):
        return (f"accelerate launch --config_file conf/accelerate/fsdp.yaml --num_processes {gpus.count} "
                "experiments/train_rm.py <same overrides> (plan it with plan.accelerate_config=conf/accelerate/fsdp.yaml)")
    per = s.batch_size * s.grad_accum  # pairs per process per optimiser step
    for b in range(s.batch_size - 1, 0, -1):  # activations: smaller micro-batches, same global batch
        if per % b == 0 and fits(batch_size=b):
            return (f"train.batch_size={b} (the global batch stays the same: {per // b} accumulation steps of {b} "
                    "pairs per process)")
    if not s.lora_r and fits(lora_r=16):
        return "train.lora_r=16 (LoRA on every linear layer; not the paper's full fine-tuning)"
    return f"more GPU memory: plan.gpus=8x{max(gpus.memory, 80 * GB) / GB:.0f}GB with FSDP (conf/accelerate/fsdp.yaml)"


def judge_engine(rater: Any, gpus: Gpus) -> Any:
    """The rater as it judges: one copy over the whole node. A vLLM rater at ``tensor_parallel_size=auto`` takes the
    largest tensor-parallel size up to the visible GPUs that vLLM accepts and that holds it (the 70B on 8 GPUs:
    tensor parallel 8, every GPU computing); its placement decides, as for rating. One copy, not several: the
    judge's evaluation pairs are a few thousand prompts, far less work than loading a second 141 GB copy. Other
    raters (``rater=hf``'s device_map, a remote server, an explicit size) judge as they are. Tensor parallelism is in
    no cache key, so the judgements are the same entries."""
    from dataclasses import is_dataclass, replace

    if not gpus.count or str(getattr(rater, "tensor_parallel_size", "")) != "auto" or not is_dataclass(rater) \
            or getattr(rater, "_llm", None) is not None:  # a loaded engine already holds its GPUs: it judges as is
        return rater
    for t in range(gpus.count, 1, -1):
        wide = replace(rater, tensor_parallel_size=t)
        if wide.placement(gpus, judge=True).fits:
            return wide
    return rater


def input_device(model: Any) -> Any:
    """Where a (possibly dispatched) model takes its inputs: the device of its input embeddings in accelerate's
    ``hf_device_map`` (offloaded modules execute on the CPU), else that of its first parameter."""
    import torch

    dmap = getattr(model, "hf_device_map", None)
    if dmap:
        emb = model.get_input_embeddings()
        name = next((n for n, m in model.named_modules() if m is emb), None)
        where = next((d for k, d in dmap.items() if name is not None and (name == k or name.startswith(k + ".")
                                                                          or k == "")), next(iter(dmap.values())))
        if isinstance(where, int):
            return torch.device("cuda", where)
        return torch.device("cpu") if where in ("cpu", "disk") else torch.device(where)
    return next(model.parameters()).device
