"""Rate the training pairs under every rule (cached, resumable), on every GPU of the node: ``rating.replicas=auto``
starts one rate.py process per rater copy that fits, each on its own GPUs rating one shard, then assembles
(:mod:`encore.node.replicas`).

    python experiments/rate.py experiment=paper_main_table
    python experiments/rate.py -m experiment=paper_main_table rating.num_shards=8 'rating.shard=range(0,8)' \\
        hydra/launcher=slurm                                          # a SLURM array, one shard per job

Settings:
    rater.model                the rater's model (hub id or folder)
    data.path                  the pairs file (jsonl, json, parquet or csv; .gz too)
    data.limit                 only the first N pairs (a pilot)
    rating.chunk_size          responses per stored chunk: a killed run loses at most one
    rating.retry_missing       true: ask the rater again for ratings stored as missing
    rating.max_missing_share   stop when more ratings than this share are missing (1 accepts any)
    rating.num_shards          split rating over N jobs into the shared cache
    rating.shard               this job's slice, 0 .. num_shards - 1
    rating.other_raters        stop: name another rater's cached ratings of these pairs; rate: rate anew anyway
    rating.replicas            auto: as many rater copies as fit the visible GPUs; N: that many; 1: this process
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from _runner import quiet_libraries, reported, run_dir


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_rate  # here, not above: --help loads no torch
    from encore.run.settings import check_settings
    from encore.node.replicas import launch

    with reported(cfg):
        check_settings(cfg)  # before any replica starts (rating.replicas=2.5 would start 2, each told replicas=1)
        quiet_libraries()
        out = run_dir()
        replicated = launch(cfg, __file__, list(HydraConfig.get().overrides.task), out)
        if not replicated or cfg.rating.num_shards is None:  # rate here, or assemble what the replicas rated
            run_rate(cfg, out)
    print(f"run dir: {out}")


if __name__ == "__main__":
    main()
