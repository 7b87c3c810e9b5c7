"""Train (or reuse) the reward model and export it: the multi-head model with its rules, entropies and weights,
and the composed single-score model that transformers loads on its own (see encore.rm.export), into the run's
export/ folder.

    python experiments/export.py
    python experiments/export.py export.method=uniform

Settings:
    export.method        whose weights are folded into the single-score model (a weight-based method of this run)
    model.name_or_path   the backbone (hub id or folder)
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_export  # here, not above: --help loads no torch

    run_job(run_export, cfg)


if __name__ == "__main__":
    main()
