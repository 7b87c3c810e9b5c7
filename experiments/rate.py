"""Rate the training pairs under every rule (cached, resumable), on every GPU of the node: ``rating.replicas=auto``
starts one rate.py process per rater copy that fits, each on its own GPUs rating one shard, then assembles
(:mod:`encore.replicas`)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from _runner import quiet_libraries, run_dir
from encore.pipeline import run_rate
from encore.replicas import launch


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    out = run_dir()
    replicated = launch(cfg, __file__, list(HydraConfig.get().overrides.task), out)
    if not replicated or cfg.rating.num_shards is None:  # rate here, or assemble what the replicas rated
        run_rate(cfg, out)
    print(f"run dir: {out}")


if __name__ == "__main__":
    main()
