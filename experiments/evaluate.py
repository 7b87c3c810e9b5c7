"""Compose the reward model's heads with every method and evaluate them on the evaluation set; the heads' scores
come from the cache, so a τ sweep re-runs no model.

    python experiments/evaluate.py method=encore method.tau=0.5
    python experiments/evaluate.py rater=smollm2 method=all_with_judge  # every method and the LLM judge (an LLM rater)
    python experiments/evaluate.py -m experiment=tau_sweep hydra/launcher=local     # 20 τ jobs from the caches

Settings:
    method.encore.tau    ENCORE's temperature under method=all (paper: 2)
    method.tau           ENCORE's temperature under method=encore
    method.k             rules kept under method=topk
    eval.path            the evaluation pairs file (eval=local: your own set; eval=reward_bench: a local copy)
    eval.subsets         the evaluation subsets scored
    stats.n_boot         bootstrap replicates for every interval
    stats.n_perm         sign flips of the paired permutation tests
    stats.reference      the method tested against every other one
    cache_only           true: only read caches; a miss stops the job and names the command that fills it
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_evaluate  # here, not above: --help loads no torch

    run_job(run_evaluate, cfg)


if __name__ == "__main__":
    main()
