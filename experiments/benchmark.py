"""Benchmarks, each printing ratios measured side by side in one run:

    python experiments/benchmark.py bench=rater
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from _runner import quiet_libraries, run_dir
from encore.artifacts import write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside the library, not in it


@hydra.main(config_path="../conf", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    result = instantiate(cfg.bench, data_path=cfg.data_path, rules=cfg.rules, _convert_="partial")
    write_json(run_dir() / "benchmark.json", result)


if __name__ == "__main__":
    main()
