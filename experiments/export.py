"""Train (or reuse) the reward model and export it: the multi-head model with its rules, entropies and weights,
and the ENCORE-composed single-score model that transformers loads on its own (see encore.rm.export)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job
from encore.pipeline import run_export


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(run_export, cfg)


if __name__ == "__main__":
    main()
