"""Every stage on the configured data: rate the pairs under each rule, the entropy-accuracy study, the multi-head
reward model, every composition method on the evaluation set, tables and figures; each stage reuses the cache of the
one before.

    python experiments/reproduce.py                                  # the embedded demo: offline, CPU, minutes
    python experiments/reproduce.py experiment=paper_main_table      # the paper's main table (GPU node)
    python experiments/reproduce.py rater=smollm2 method=all_with_judge   # every method and the LLM judge
    python experiments/reproduce.py --config-dir mine data=local data.path=mine/pairs.jsonl \\
        rater=file rater.path=mine/ratings.csv rules=mine eval=local eval.path=mine/eval.jsonl

Settings:
    data.path            the training pairs file (jsonl, json, parquet or csv; .gz too)
    data.limit           only the first N training pairs (a pilot)
    eval.path            the evaluation pairs file (eval=local: your own set; eval=reward_bench: a local copy)
    rater.model          the rater's model (hub id or folder)
    rater.path           the ratings file rater=file reads (docs/own-ratings.md)
    model.name_or_path   the reward model's backbone (hub id or folder)
    method.encore.tau    ENCORE's temperature under method=all (paper: 2)
    method.tau           ENCORE's temperature under method=encore
    stats.n_boot         bootstrap replicates for every interval
    stats.n_perm         sign flips of the paired permutation tests
    logger.mode          wandb: offline (a run folder to sync later) or online
    cache_only           true: only read caches; a miss stops the job and names the command that fills it
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_reproduce  # here, not above: --help loads no torch

    run_job(run_reproduce, cfg)


if __name__ == "__main__":
    main()
