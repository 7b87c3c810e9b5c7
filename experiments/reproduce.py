"""Every stage on the configured data: ratings, study, heads, evaluation, figures."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job
from encore.pipeline import run_reproduce


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(run_reproduce, cfg)


if __name__ == "__main__":
    main()
