"""Preflight plan: what every model-loading stage of an experiment needs and whether it fits, before anything loads.

    python experiments/plan.py experiment=paper_main_table plan.gpus=8xH100
    python experiments/plan.py experiment=paper_main_table train=finetune plan.accelerate_config=conf/accelerate/fsdp.yaml

Exit status 0 when every stage fits, 1 otherwise (each stage that does not fit prints its fix). The plan is also
written to runs/plans/<experiment>_<time>.plan.json.

Settings:
    plan.gpus              auto: this machine's GPUs; COUNTxTYPE (8xH100) or COUNTxMEMORY (8x80GB) for another
    plan.headroom          share of each GPU left for the CUDA context, fragmentation and NCCL buffers
    plan.accelerate_config auto (one process per GPU: ddp, else fsdp), single, or a conf/accelerate/*.yaml file
    plan.sample            responses tokenised to count prefill tokens
    plan.mfu               share of the bf16 peak each computing GPU reaches, for the hours of each stage
    plan.peak_tflops       dense bf16 TFLOP/s per GPU; null: from the GPU's name (detected, or plan.gpus=8xH100)
    data.path              the pairs file whose tokens are counted (hub data offline: ESTIMATE from plan.estimates)
    rater.tokenizer        the rater's tokenizer for those counts (a folder; the model's own when null)
"""

from __future__ import annotations

import sys
from datetime import datetime

import hydra
from omegaconf import DictConfig

from _runner import quiet_libraries, reported, run_dir
from encore.cache.artifacts import write_json
from encore.node.plan import format_plan, plan_experiment
from encore.run.kinds import PLAN, check_kinds


@hydra.main(config_path="../conf", config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with reported(cfg):
        check_kinds(cfg, PLAN)
        quiet_libraries()
        plan = plan_experiment(cfg)
    write_json(run_dir() / f"{cfg.experiment_name}_{datetime.now():%Y-%m-%d_%H-%M-%S-%f}.plan.json", plan)
    print(format_plan(plan))
    if not plan["fits"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
