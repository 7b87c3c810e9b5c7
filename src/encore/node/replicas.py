"""Every GPU of a node rating at once (``rating.replicas``): as many copies of the rater as fit the visible GPUs,
each a separate ``experiments/rate.py`` process pinned to its own GPUs (``CUDA_VISIBLE_DEVICES``) and rating one
deterministic shard (:mod:`encore.rating.shards`) into the shared cache; the launching process then assembles the
table from that cache. No new engine: a replica is the same rater on fewer GPUs, a shard the same slice a SLURM
array task would rate, so the table is identical to one process's (tested on CPU with two replica processes).

A ``rater=hf`` replica spreads its model over its GPUs with accelerate's ``device_map`` (layers in sequence: one GPU
computes at a time), so replicas are where a node's throughput comes from: the placement picks the batch (up to
``rater.batch_size``) that fits the most copies, and each replica process is told that batch. A ``rater=vllm``
replica is tensor parallel over ``rater.tensor_parallel_size`` GPUs (``auto``: the fewest that hold it): replicas x
tensor parallel is vLLM's data x tensor parallelism, every GPU computing. The plan (:mod:`encore.node.plan`) asks
:func:`rater_fill` too, so what it prints is what a run starts.

Under ``rating.num_shards=N rating.shard=s`` (an array task per node) the R replicas rate shards ``s·R + i`` of
``N·R``: the N tasks' replicas together cover every shard once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_OWN = ("rating.replicas", "rating.num_shards", "rating.shard", "hydra.run.dir", "hydra/launcher")


@dataclass(frozen=True)
class Replicas:
    """``groups[i]``: the device ids (as the launching process's ``CUDA_VISIBLE_DEVICES`` names them) replica i
    sees; an empty group is a CPU replica."""

    groups: tuple[tuple[str, ...], ...]
    per_replica: int
    overrides: tuple[str, ...] = ()  # what each replica process is told the placement chose (rater.batch_size=6)

    @property
    def count(self) -> int:
        return len(self.groups)


def visible_devices(count: int) -> list[str]:
    """The ids this process's GPUs have in its parent's numbering: ``CUDA_VISIBLE_DEVICES`` when set (ids or
    UUIDs), else ``0 .. count-1``."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in env.split(",") if d.strip()] if env else [str(i) for i in range(count)]
    return ids[:count]


def wanted(setting: Any) -> int | None:
    """``rating.replicas``: None for ``auto`` (as many as fit), else the positive integer asked for."""
    if setting in (None, "auto"):
        return None
    try:
        n = int(setting)
    except (TypeError, ValueError):
        raise ValueError(f"rating.replicas={setting!r}: use auto or a positive integer") from None
    if n < 1:
        raise ValueError(f"rating.replicas={n}: use auto or a positive integer")
    return n


def how_many(setting: Any, per_replica: int, count: int) -> int:
    """Replicas for ``rating.replicas=setting`` when one replica needs ``per_replica`` of ``count`` GPUs:
    ``auto`` = ``count // per_replica`` (at least 1; 1 on a CPU), an integer = that many (checked against the
    GPUs)."""
    n = wanted(setting)
    if n is None:
        return max(1, count // per_replica) if count and per_replica else 1
    if count and n * per_replica > count:
        raise ValueError(f"rating.replicas={n}: each replica needs {per_replica} GPU(s), {count} are visible; use "
                         f"rating.replicas={max(1, count // per_replica)} or rating.replicas=auto")
    return n


def replica_groups(setting: Any, per_replica: int, count: int, overrides: tuple[str, ...] = ()) -> Replicas:
    """Consecutive blocks of ``per_replica`` visible GPUs, one per replica (no GPU each on a CPU)."""
    n = how_many(setting, per_replica, count)
    ids = visible_devices(count)
    if not count:
        return Replicas(tuple(() for _ in range(n)), 0, overrides)
    return Replicas(tuple(tuple(ids[i * per_replica:(i + 1) * per_replica]) for i in range(n)), per_replica,
                    overrides)


def rater_fill(rater: Any, gpus: Any, n_rules: int, setting: Any = "auto") -> tuple[Any, int, int]:
    """(placement, GPUs per copy, copies) of ``rater`` on ``gpus`` for ``rating.replicas=setting``: one copy on the
    fewest GPUs that hold it (vLLM: its tensor parallel size; rater=hf: at the batch that fits the most copies, or
    the asked-for number), as many copies as fit. A rater that does not fit, or has no placement, takes every GPU
    as one copy (its process then reports why); an impossible ``rating.replicas`` raises with the number that
    fits."""
    place = rater.placement(gpus, n_rules=n_rules, copies=wanted(setting)) if hasattr(rater, "placement") else None
    per = place.n_gpus if place is not None and place.fits and place.n_gpus else gpus.count
    return place, per, how_many(setting, per, gpus.count) if gpus.count else 1


def shard_of(i: int, replicas: int, num_shards: int | None, shard: int | None) -> tuple[int, int]:
    """(num_shards, shard) replica ``i`` of ``replicas`` rates: ``i`` of R, or ``s·R + i`` of ``N·R`` inside
    shard ``s`` of ``N``."""
    if num_shards is None:
        return replicas, i
    return int(num_shards) * replicas, int(shard) * replicas + i


def commands(script: str, overrides: list[str], reps: Replicas, out: Path, num_shards: int | None = None,
             shard: int | None = None) -> list[tuple[list[str], dict[str, str]]]:
    """The (argv, environment) of each replica process: this job's own overrides (replica and shard settings
    replaced), its shard, its run directory under ``out``, and its GPUs in ``CUDA_VISIBLE_DEVICES``."""
    own = {*_OWN, *(o.split("=")[0] for o in reps.overrides)}
    keep = [o for o in overrides if o.split("=")[0].lstrip("+~") not in own]
    cpus = max(1, (os.cpu_count() or 1) // reps.count)
    out_cmds = []
    for i, group in enumerate(reps.groups):
        n, s = shard_of(i, reps.count, num_shards, shard)
        argv = [sys.executable, str(Path(script).resolve()), *keep, *reps.overrides, "rating.replicas=1",
                f"rating.num_shards={n}", f"rating.shard={s}", f"hydra.run.dir={out / f'replica_{i}'}"]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(group)}
        if not group:  # CPU replicas share the cores instead of each taking all of them
            env.setdefault("OMP_NUM_THREADS", str(cpus))
        out_cmds.append((argv, env))
    return out_cmds


def run_all(cmds: list[tuple[list[str], dict[str, str]]], out: Path) -> None:
    """Start every replica at once, wait for all; a failed one raises with its log and the command that re-runs
    only its shard (the others' ratings stay in the cache)."""
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (argv, env) in enumerate(cmds):
        logf = open(out / f"replica_{i}.log", "w")  # noqa: SIM115 - closed below, after the process ends
        log.info("replica %d on CUDA_VISIBLE_DEVICES=%r: %s", i, env["CUDA_VISIBLE_DEVICES"], " ".join(argv[1:]))
        procs.append((subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT), logf))
    failed = []
    for i, (p, logf) in enumerate(procs):
        if p.wait() != 0:
            failed.append(i)
        logf.close()
    if failed:
        lines = "\n".join(f"  replica {i} (log {out / f'replica_{i}.log'}): CUDA_VISIBLE_DEVICES="
                          f"{cmds[i][1]['CUDA_VISIBLE_DEVICES']!r} {' '.join(cmds[i][0][1:])}" for i in failed)
        tail = (out / f"replica_{failed[0]}.log").read_text()[-2000:]
        raise RuntimeError(f"{len(failed)} of {len(cmds)} rating replica(s) failed; re-run each alone:\n{lines}\n"
                           f"last lines of replica {failed[0]}:\n{tail}")


def plan_for(cfg: Any) -> Replicas:
    """The replicas ``rating.replicas`` gives this job on the GPUs it sees (totals: reading them opens no CUDA
    context in this launching process, which keeps none while its replicas run); one under a distributed launch
    (training ranks never rate) and for ratings that exist already or a remote server."""
    from omegaconf import OmegaConf

    from encore.scale.hardware import detect
    from encore.run.pipeline import build
    from encore.rating.given import is_given
    from encore.rules import load_rules

    setting = cfg.rating.get("replicas", "auto")
    if int(os.environ.get("WORLD_SIZE") or 1) > 1 or str(setting) == "1":
        return Replicas(((),), 0)
    rater = build(cfg.rater)
    gpus = detect(float(cfg.plan.headroom))
    if is_given(rater) or not hasattr(rater, "placement"):
        return Replicas(((),), 0)
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    if not gpus.count:  # processes x threads chosen for this machine's cores (encore.scale.cpu_layout)
        from encore.scale.cpu_layout import for_rater

        layout = for_rater(setting, rater)
        print(layout.line(), flush=True)
        return replica_groups(layout.processes, 0, 0)
    place, per, _ = rater_fill(rater, gpus, len(rules), setting)
    told = (f"rater.batch_size={place.batch}",) if place is not None and place.fits and place.batch else ()
    return replica_groups(setting, per, gpus.count, told)


def launch(cfg: Any, script: str, overrides: list[str], out: Path) -> bool:
    """Rate ``cfg`` as replica processes when it gets more than one; False when this process rates alone."""
    reps = plan_for(cfg)
    if reps.count < 2:
        return False
    log.info("rating with %d replicas of %d GPU(s) each: %s%s", reps.count, reps.per_replica, list(reps.groups),
             f", each told {' '.join(reps.overrides)}" if reps.overrides else "")
    run_all(commands(script, overrides, reps, out, cfg.rating.num_shards, cfg.rating.shard), out)
    return True
