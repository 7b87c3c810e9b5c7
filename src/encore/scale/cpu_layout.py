"""How a rating job without a GPU uses the cores it may run on: processes x threads per process, chosen for the
machine it runs on rather than inherited from torch's default (one process spreading its threads over every core).

    auto (rating.replicas=auto):  one process per core, one thread each, each rating its own shard
                                  (:mod:`encore.node.replicas`, :mod:`encore.rating.shards`), when the model is
                                  worth a second start-up (at least MIN_PARAMS parameters); else one process on
                                  every core
    rating.replicas=N:            N processes, the cores shared out among them
    OMP_NUM_THREADS=T:            T threads per process, and the processes that fill the rest of the cores

An explicit setting wins over auto. Why one thread per process: torch's threads of one forward pass wait for each
other at every operator, so on a machine where other jobs hold cores one descheduled thread stalls the pass (SmolLM2
on ~150 tokens took 0.3 to 12 s with two threads on two contended cores, 0.7 s with one); a single-threaded
process only loses its share of the cores. Measured side by side with ``experiments/benchmark.py bench=engines
bench.layouts=[1x2,2x1] bench.background=2`` (numbers in docs/raters-and-models.md, "Rating on CPUs").
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

MIN_PARAMS = 50_000_000  # below this a model rates a study in about the time a second process takes to start


@dataclass(frozen=True)
class CpuLayout:
    processes: int
    threads: int
    why: str

    def line(self) -> str:
        return f"CPU layout: {self.processes} process(es) x {self.threads} thread(s) ({self.why})"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def explicit_threads(env: dict[str, str] | None = None) -> int | None:
    """``OMP_NUM_THREADS`` when set to a positive integer, else None."""
    v = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
    return int(v) if v.strip().isdigit() and int(v) > 0 else None


def choose(cores: int, replicas: Any = "auto", threads: int | None = None, n_params: int | None = None) -> CpuLayout:
    """The layout for ``cores`` usable cores, ``rating.replicas=replicas``, ``threads`` per process asked for
    (``OMP_NUM_THREADS``; None: not asked) and a model of ``n_params`` (None: unknown, taken as large)."""
    cores = max(1, int(cores))
    if replicas not in (None, "auto"):
        n = int(replicas)
        if n < 1:
            raise ValueError(f"rating.replicas={replicas}: use auto or a positive integer")
        return CpuLayout(n, threads or max(1, cores // n), f"rating.replicas={n}"
                         + (f", OMP_NUM_THREADS={threads}" if threads else f", {cores} core(s) shared out"))
    if n_params is not None and n_params < MIN_PARAMS:
        return CpuLayout(1, threads or cores, f"a {n_params / 1e6:.3g} M-parameter model: one process, "
                         "a second would cost more to start than it saves")
    if threads:
        return CpuLayout(max(1, cores // threads), threads, f"OMP_NUM_THREADS={threads} on {cores} core(s)")
    return CpuLayout(cores, 1, f"auto on {cores} core(s): one single-threaded process per core, each its own shard")


def for_rater(replicas: Any, rater: Any, cores: int | None = None) -> CpuLayout:
    """:func:`choose` for ``rater`` (its parameter count when it has an architecture) on this machine. A rater that
    does not compute on this process's torch threads (``torch_threads`` false: vLLM's CPU build binds its own, a
    remote server, stored ratings) gets one process, as before."""
    if not getattr(rater, "torch_threads", False):
        return CpuLayout(1, explicit_threads() or (cores or usable_cores()), "the rater manages its own threads")
    try:
        n_params = rater.arch_info().n_params if hasattr(rater, "arch_info") else None
    except Exception:  # noqa: BLE001 - an unreadable config is reported by the rater itself when it loads
        n_params = None
    return choose(cores or usable_cores(), replicas, explicit_threads(), n_params)


@contextmanager
def gqa_in_sdpa(device: Any) -> Iterator[None]:
    """On a CPU, transformers' SDPA attention runs grouped-query attention inside torch's kernel
    (``enable_gqa``) instead of first copying every key/value head once per query head it serves
    (``repeat_kv``): the same arithmetic, bit for bit, without 17 % of rater=hf's time on SmolLM2 (its docstring).
    transformers reads ``TRANSFORMERS_SDPA_FORCE_GQA`` at each call; it is set for the block only. Elsewhere
    nothing changes (CUDA's fused kernels take no GQA with a mask)."""
    import torch

    if torch.device(device).type != "cpu":
        yield
        return
    key = "TRANSFORMERS_SDPA_FORCE_GQA"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
