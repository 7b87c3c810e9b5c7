"""Which pairs each micro-step trains on, on which process, and with what weight, so that a run gives the same model
on any number of processes and for any data size.

Micro-step ``m`` takes the global batch ``m`` of its epoch (a seeded permutation of the training pairs, ``B × n``
pairs for ``B`` pairs per process on ``n`` processes; the last batch of an epoch is shorter); process ``r`` takes
pairs ``r, r + n, ...`` of it. ``A`` consecutive micro-steps form one optimiser step (the last window of a run may be
shorter and still steps). The loss of process ``r`` at micro-step ``m`` is

    L_r = n · A · S_r / T_w          S_r: summed loss of r's pairs (squared errors over rated entries, or BT terms)
                                     T_w: rated entries (or pairs) in the whole window w of m, over all processes

so after the trainer's division by ``A`` and the data-parallel mean over ``n`` processes the gradient is that of the
window's mean loss: the same for 1 or n processes, for a short last batch, a short last window, and entries missing
(NaN) unevenly across processes. A process left without pairs (a batch shorter than ``n``) still runs forward and
backward on one pair with weight 0, since every process must join the gradient reduction.

The global batch (``train.global_batch``, pairs per optimiser step ``G = B · n · A``) is the setting; ``B`` and ``A``
follow from the number of processes (:func:`batch_split`), so a run on 1 GPU and on 8 takes the same optimiser steps
over the same pairs (for one epoch, the paper's: windows then never straddle an epoch's end).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


class MicroBatches:
    """The schedule of one run. ``weights``: per training pair (indexed like the pair table), the number of entries
    its loss sums over (rated values for the masked MSE, 1 for Bradley–Terry)."""

    def __init__(self, train: np.ndarray, weights: np.ndarray, batch_size: int, processes: int, grad_accum: int,
                 seed: int, epochs: float, max_steps: int | None):
        self.train, self.weights, self.n, self.accum, self.seed = train, weights, processes, grad_accum, seed
        self.global_batch = batch_size * processes
        self.per_epoch = max(1, math.ceil(len(train) / self.global_batch))
        self.micro_steps = max_steps * grad_accum if max_steps else math.ceil(epochs * self.per_epoch)
        self.optimiser_steps = math.ceil(self.micro_steps / grad_accum)
        self._order = lru_cache(maxsize=2)(self._epoch_order)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return self.train[np.random.default_rng([self.seed, epoch]).permutation(len(self.train))]

    def epoch(self, m: int) -> int:
        return m // self.per_epoch

    def chunk(self, m: int) -> np.ndarray:
        """The global batch of micro-step ``m`` (pair indices)."""
        epoch, pos = divmod(m, self.per_epoch)
        return self._order(epoch)[pos * self.global_batch: (pos + 1) * self.global_batch]

    def is_boundary(self, m: int) -> bool:
        """Whether the optimiser steps after micro-step ``m``: every ``A`` micro-steps and after the last one."""
        return (m + 1) % self.accum == 0 or m + 1 == self.micro_steps

    def window_total(self, m: int) -> float:
        """T_w: the entries the loss sums over in the window of micro-step ``m``, over all processes."""
        first = m - m % self.accum
        return float(sum(self.weights[self.chunk(j)].sum() for j in range(first, min(first + self.accum,
                                                                                      self.micro_steps))))

    def part(self, m: int, rank: int) -> tuple[np.ndarray, float]:
        """(pairs of process ``rank`` at micro-step ``m``, n · A / T_w): the factor turns its summed loss into L_r;
        0 for a process without pairs, which then runs one pair of the batch for the reduction only."""
        chunk = self.chunk(m)
        mine, total = chunk[rank:: self.n], self.window_total(m)
        if len(mine) == 0 or total == 0:
            return (mine if len(mine) else chunk[:1]), 0.0
        return mine, self.n * self.accum / total


def batch_split(global_batch: int, batch_size: int, processes: int) -> tuple[int, int]:
    """(pairs per process per micro-step, micro-steps per optimiser step) that make ``global_batch`` pairs per
    optimiser step on ``processes`` processes: each process takes ``global_batch / processes`` pairs per step, in the
    largest micro-batch up to ``batch_size`` that divides them. Refused when the processes do not divide the global
    batch (each would take a different share, or the step would not be the paper's)."""
    per, rest = divmod(global_batch, max(processes, 1))
    if rest or not per:
        fits = [n for n in range(1, min(global_batch, 64) + 1) if global_batch % n == 0]
        raise ValueError(f"train.global_batch={global_batch} on {processes} processes: every process must take the "
                         f"same whole share of each optimiser step's pairs; launch {', '.join(map(str, fits))} "
                         f"process(es), or set train.global_batch to a multiple of {processes} (e.g. "
                         f"{-(-global_batch // processes) * processes}: a different batch than the paper's)")
    micro = max(b for b in range(1, min(batch_size, per) + 1) if per % b == 0)
    return micro, per // micro
