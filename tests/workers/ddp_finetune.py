"""One rank of the data-parallel fine-tuning tests: started twice by torchrun with ACCELERATE_USE_CPU=true (gloo).
Trains the tiny decoder exactly as tests/test_distributed.py's single-process reference, at the same global batch
(each rank takes half of it), into the cache directory given as the first argument. ``--die-at N``: both ranks are killed at their N-th
micro-step (a preempted job); ``--save-every S``: checkpoint every S optimiser steps."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_distributed import TRAIN, setup  # noqa: E402

import encore.rm.finetune as ft  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--die-at", type=int, default=None)
    ap.add_argument("--save-every", type=int, default=TRAIN["save_every"])
    a = ap.parse_args()
    if a.die_at:
        calls, loss = {"n": 0}, ft.masked_mse

        def dies(pred, target):
            calls["n"] += 1
            if calls["n"] == a.die_at:
                raise SystemExit(f"killed at micro-step {a.die_at}")
            return loss(pred, target)

        ft.masked_mse = dies
    enc, pairs, y = setup()
    cfg = {**TRAIN, "batch_size": 4, "save_every": a.save_every}  # 4 per rank x 2 ranks: the reference's 8-pair micro-steps
    ft.Finetune(**cfg).train_model(enc, pairs, y, "mse", Path(a.cache), "k")
