"""The entropy-vs-accuracy study of the rules: each rule's rating entropy H_k and accuracy (share of pairs it rates
chosen above rejected), their Pearson and Spearman correlation with bootstrap intervals, and the figure; ratings
come from the cache (or are rated first).

    python experiments/correlation.py                                         # the demo
    python experiments/correlation.py -m experiment=paper_correlation         # the paper's three datasets
    python experiments/correlation.py rater=file rater.path=mine/ratings.csv --config-dir mine rules=mine

Settings:
    data.path            the pairs file (jsonl, json, parquet or csv; .gz too)
    data.limit           only the first N pairs (a pilot)
    rater.path           the ratings file rater=file reads (docs/own-ratings.md)
    study.bins           equal-width bins on [0, 1] for the entropy
    study.ties           a tie (chosen rated as rejected): wrong (a miss, as RewardBench), half or drop
    study.log_base       e (nats), 2 (bits) or another base > 1
    stats.n_boot         bootstrap replicates for every interval
    stats.seed           seed of the bootstrap
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_correlation  # here, not above: --help loads no torch

    run_job(run_correlation, cfg)


if __name__ == "__main__":
    main()
