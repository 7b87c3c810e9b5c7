"""Benchmarks, each printing ratios measured side by side in one run:

    python experiments/benchmark.py bench=rater      # batched rating vs one forward pass per (response, rule)
    python experiments/benchmark.py bench=heads      # K heads on one backbone pass vs K backbone passes
    python experiments/benchmark.py bench=shards     # rating.num_shards jobs vs one
    python experiments/benchmark.py bench=sweep      # a τ sweep from the caches vs re-running every job

Writes benchmark.json in the run directory (runs/benchmark/<time>/).

Settings:
    data_path            the HH-RLHF harmless-base test file; null: $ENCORE_SHARED_DATA, else ../shared/data
    bench.n_pairs        HH-RLHF pairs benchmarked (heads, shards, sweep)
    bench.n_conversations  HH-RLHF conversations rated (rater)
    bench.repeats        the best of this many timings per side
    bench.batch_size     responses per batch
    bench.num_shards     shard jobs (shards)
    bench.n_taus         τ values of the sweep (sweep)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from _runner import quiet_libraries, reported, run_dir
from encore.cache.artifacts import write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside the library, not in it


HH_FILE = "hh-rlhf-harmless-base-test.jsonl.gz"


def data_path(given: str | None) -> str:
    """The benchmark's HH-RLHF file: ``data_path=...``, else ``$ENCORE_SHARED_DATA``, else ``../shared/data`` beside
    this clone, whatever the working directory."""
    if given:
        path, how = Path(given).expanduser(), f"data_path={given}"
    elif os.environ.get("ENCORE_SHARED_DATA"):
        path, how = Path(os.environ["ENCORE_SHARED_DATA"]) / HH_FILE, "$ENCORE_SHARED_DATA"
    else:
        path, how = Path(__file__).resolve().parents[2] / "shared" / "data" / HH_FILE, "../shared/data beside the clone"
    if not path.is_file():
        raise SystemExit(f"benchmark data not found: {path} (from {how}). Fix: data_path=<path to {HH_FILE}> or "
                         f"export ENCORE_SHARED_DATA=<folder holding it>")
    return str(path)


@hydra.main(config_path="../conf", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with reported(cfg):
        quiet_libraries()
        result = instantiate(cfg.bench, data_path=data_path(cfg.data_path), rules=cfg.rules, _convert_="partial")
    write_json(run_dir() / "benchmark.json", result)


if __name__ == "__main__":
    main()
