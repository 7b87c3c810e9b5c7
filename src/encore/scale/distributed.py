"""How a fine-tuning run is spread, read from where it is decided: the running ``accelerate`` state (at run time) or
the accelerate config file it will be launched with (when planning). The training code itself does not care which
strategy launched it; only the memory check and the final gather do. Also the optimiser, since its choice is what
makes an 8B model fit one GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import torch

from encore.cache.integrity import hash_files, share, verify_seconds
from encore.scale.memory import SHARDED

log = logging.getLogger(__name__)
COLLECTIVE_TIMEOUT_S = 600  # NCCL's default process-group timeout (torch: default_pg_nccl_timeout, 10 minutes)

OPTIMS = ("adamw", "adamw_8bit")


def launch_state() -> Any:
    """The launch's accelerate ``PartialState``, made first so every later ``PartialState()`` shares it. It honours
    ``ACCELERATE_USE_CPU`` as ``AcceleratorState`` does; a bare ``PartialState()`` ignores it, and on CPU every rank
    of a ``torchrun`` / ``accelerate launch`` would then believe it runs alone."""
    import atexit

    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    atexit.register(_leave_group)
    return state


def _leave_group() -> None:
    """At exit, tear the default process group down. A rank that leaves it standing can abort while exiting, as
    ``terminate called without an active exception`` (SIGABRT; seen once in CI on gloo when one rank finished before
    the other), which torchrun reports as a failed job."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - the job's result is already written; exiting must not fail on teardown
        pass


def runtime_strategy(acc: Any) -> tuple[str, int]:
    """(strategy, processes) of the running accelerate job: single, ddp, fsdp (FULL_SHARD / HYBRID) or zero3.
    Stops when the launcher started more processes (``WORLD_SIZE``) than accelerate joined: each would train alone
    and overwrite the others' checkpoints."""
    import os

    from accelerate.utils import DistributedType

    n = acc.num_processes
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > n:
        raise RuntimeError(f"launched as {world} processes (WORLD_SIZE) but accelerate runs {n}: every rank would "
                           "train alone into the same checkpoints. On CPU set ACCELERATE_USE_CPU=true and start the "
                           "job through experiments/*.py (they call encore.scale.distributed.launch_state first)")
    if acc.distributed_type == DistributedType.FSDP:
        plugin = acc.state.fsdp_plugin
        sharding = str(getattr(plugin, "sharding_strategy", "FULL_SHARD")) if plugin else "FULL_SHARD"
        return ("ddp" if "NO_SHARD" in sharding else "fsdp"), n
    if acc.distributed_type == DistributedType.DEEPSPEED:
        stage = acc.state.deepspeed_plugin.zero_stage
        return ("zero3" if stage == 3 else "ddp"), n
    return ("ddp" if n > 1 else "single"), n


def shared_hashes(acc: Any, d: Path, files: dict[str, dict[str, Any]] | None) -> dict[str, str] | None:
    """Collective (every rank calls it with the same ``files``, the checksum list each read from the shared
    filesystem): each rank hashes its share of ``d``'s listed files (:func:`encore.cache.integrity.share`, about
    1/world of the bytes) and every rank gets all the SHA-256s. None on one process (the caller hashes) or when there
    is nothing worth hashing (no list, a size already differs: the check names it without hashing). The gather runs
    in its own gloo group whose timeout is 3x the expected verification time (:func:`verify_seconds`) plus the
    usual 10 minutes, so a rank that hashes longer never trips the launch's collective timeout."""
    if acc.num_processes <= 1 or not files:
        return None
    if any(not (d / rel).is_file() or (d / rel).stat().st_size != want.get("bytes") for rel, want in files.items()):
        return None
    import datetime

    import torch.distributed as dist

    world, rank = acc.num_processes, acc.process_index
    expected = verify_seconds([int(w.get("bytes") or 0) for w in files.values()], ranks=world)
    timeout = datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S + 3 * expected)
    group = dist.new_group(backend="gloo", timeout=timeout)
    try:
        mine = hash_files(d, share(files, rank, world))
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, mine, group=group)
    finally:
        dist.destroy_process_group(group)
    out: dict[str, str] = {}
    for part in gathered:
        out.update(part or {})
    if rank == 0:
        log.info("verified %s: %d file(s), %.1f GB, hashed by %d ranks (expected %.0f s at the measured hash rate)",
                 d, len(files), sum(int(w.get("bytes") or 0) for w in files.values()) / 1e9, world, expected)
    return out


def fill_deepspeed_config(acc: Any, micro_batch: int, max_grad_norm: float, hidden_size: int) -> None:
    """Under DeepSpeed, the ``auto`` entries that ``accelerate.prepare`` would read off a DataLoader or
    ``model.config`` — this trainer passes neither — filled from the run's own settings: micro batch (pairs per
    process, ``train.batch_size``), the global batch ``micro × grad_accum × processes``, gradient clipping
    (``train.max_grad_norm``: DeepSpeed clips inside its engine) and the hidden-size-based ZeRO buckets, as accelerate
    derives them. Entries the DeepSpeed config sets to a number are kept. Other strategies: nothing to do."""
    from accelerate.utils import DistributedType

    if acc.distributed_type != DistributedType.DEEPSPEED:
        return
    plugin, ga = acc.deepspeed_plugin, acc.gradient_accumulation_steps
    values = {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": ga,
              "gradient_clipping": max_grad_norm,
              "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
              "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
              "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size}
    for key in values:
        plugin.fill_match(key, must_match=False, **values)  # replaces an "auto", leaves a number
    values = {"train_batch_size": plugin.get_value("train_micro_batch_size_per_gpu")
              * plugin.get_value("gradient_accumulation_steps") * acc.num_processes}
    plugin.fill_match("train_batch_size", must_match=False, **values)


def _read_config(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"plan.accelerate_config={path}: no such file (the shipped ones are conf/accelerate/*.yaml)")
    return yaml.safe_load(p.read_text()) or {}


def machines_from_file(path: str | Path | None) -> int:
    """``num_machines`` of an accelerate config file (1 when no file)."""
    return int(_read_config(path).get("num_machines", 1) or 1) if path else 1


def strategy_from_file(path: str | Path | None) -> tuple[str, int]:
    """(strategy, processes over all machines) an ``accelerate launch --config_file PATH`` would run; one process
    when no file. accelerate's ``num_processes`` is already the total: its launcher starts
    ``num_processes // num_machines`` per machine (``accelerate.utils.launch``, ``--nproc_per_node``)."""
    if not path:
        return "single", 1
    cfg = _read_config(path)
    kind = str(cfg.get("distributed_type", "NO")).upper()
    n = int(cfg.get("num_processes", 1) or 1)  # accelerate's num_processes counts every machine's processes
    if kind == "FSDP":
        sharding = str((cfg.get("fsdp_config") or {}).get("fsdp_sharding_strategy", "FULL_SHARD"))
        return ("ddp" if "NO_SHARD" in sharding else "fsdp"), n
    if kind == "DEEPSPEED":
        stage = int((cfg.get("deepspeed_config") or {}).get("zero_stage", 0))
        return ("zero3" if stage == 3 else "ddp"), n
    return ("ddp" if n > 1 else "single"), n


def check_combination(strategy: str, lora_r: int, optim: str) -> None:
    """Combinations this trainer does not support, refused before any weight is loaded."""
    if strategy in SHARDED and lora_r:
        raise ValueError("train.lora_r>0 under FSDP/ZeRO-3: LoRA adapters fit one GPU; launch without a sharded "
                         "accelerate config, or set train.lora_r=0 for sharded full fine-tuning")
    if strategy == "zero3" and optim != "adamw":
        raise ValueError("train.optim=adamw_8bit under DeepSpeed: DeepSpeed brings its own optimiser; use train.optim=adamw")
    if strategy == "fsdp" and optim != "adamw":
        # torchao's 8-bit state cannot be saved by FSDP's optimiser state dict (pytorch/ao#1185, open), so the run
        # would die at its first checkpoint; and FSDP2 under mixed precision upcasts trainable bf16 weights to fp32
        # (accelerate's fsdp2_prepare_model), which silently turns bf16 stochastic rounding off.
        raise ValueError("train.optim=adamw_8bit under FSDP: torchao's 8-bit optimiser state cannot be checkpointed "
                         "by FSDP (pytorch/ao#1185), and FSDP2 upcasts bf16 weights to fp32, turning stochastic "
                         "rounding off; use train=finetune (fp32 weights, train.optim=adamw) with "
                         "conf/accelerate/fsdp.yaml, or run train=finetune_1gpu with conf/accelerate/ddp.yaml or "
                         "one process")


def make_optimizer(params: Iterable[torch.nn.Parameter], optim: str, lr: float, weight_decay: float) -> Any:
    """``adamw``: torch AdamW (fused on CUDA), moments in the parameter dtype. ``adamw_8bit``: torchao's AdamW8bit,
    moments in 8-bit blocks, with stochastic rounding of bf16 weights so that updates far below bf16's resolution
    (lr 2e-5 on weights ~1e-2) still move them on average instead of rounding away."""
    params = list(params)
    if optim == "adamw":
        fused = bool(params) and all(p.is_cuda for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if optim == "adamw_8bit":
        try:
            from torchao.optim import AdamW8bit
        except ImportError as e:  # pragma: no cover - torchao is a requirement
            raise ImportError("train.optim=adamw_8bit needs torchao: pip install torchao") from e
        bf16 = any(p.dtype == torch.bfloat16 for p in params)
        return AdamW8bit(params, lr=lr, weight_decay=weight_decay, bf16_stochastic_round=bf16)
    raise ValueError(f"train.optim={optim!r}; use one of {OPTIMS}")
