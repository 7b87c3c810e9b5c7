"""Compose the heads with every method and evaluate; a tau sweep re-runs no model:
    python experiments/evaluate.py -m method=encore method.tau=0.25,0.5,1,2,4,8"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job
from encore.pipeline import run_evaluate


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(run_evaluate, cfg)


if __name__ == "__main__":
    main()
