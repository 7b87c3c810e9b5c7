"""Load beside a benchmark and CPU layouts timed side by side, for ``bench=engines``:

- :func:`busy`: N processes that each keep one core busy (a Python spin loop) while the block runs, as other jobs
  on a shared machine do; stopped (each by its own process handle) when the block ends, also on an error.
- :func:`time_layout`: rater=hf on the same responses as P processes x T threads, each process rating its own
  share (round-robin over the responses sorted by length, so the shares are alike), all started, loaded and warmed
  up before a common start; the wall time from that start until the last process is done.
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def busy(n: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, int(n)))]
    try:
        time.sleep(0.5 if procs else 0)  # let the scheduler see them
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _worker(rater_kwargs: dict, threads: int, prompts: list[str], responses: list[str], rules: list,
            barrier: Any, out: Any) -> None:
    import torch

    from encore.rating.hf import HFRater

    torch.set_num_threads(threads)
    rater = HFRater(**rater_kwargs).load()
    rater.rate(prompts[:1], responses[:1], rules)  # warm-up
    barrier.wait()
    rater.rate(prompts, responses, rules)
    out.put(time.time())


def time_layout(processes: int, threads: int, rater_kwargs: dict, prompts: list[str], responses: list[str],
                rules: list, timeout: float = 3600) -> float:
    """Seconds from the common start until the last of ``processes`` x ``threads`` rater processes finished."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    order = sorted(range(len(responses)), key=lambda i: -len(prompts[i]) - len(responses[i]))
    shares = [order[i::processes] for i in range(processes)]
    barrier, out = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(rater_kwargs, threads, [prompts[i] for i in s],
                                               [responses[i] for i in s], rules, barrier, out))
             for s in shares]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=timeout)
        start = time.time()
        ends = [out.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return max(ends) - start


def parse(layout: str) -> tuple[int, int]:
    """``"2x1"`` -> (2 processes, 1 thread each)."""
    try:
        p, t = (int(x) for x in str(layout).lower().split("x"))
        if p < 1 or t < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"bench.layouts entry {layout!r}: write processes x threads, e.g. 2x1") from None
    return p, t
