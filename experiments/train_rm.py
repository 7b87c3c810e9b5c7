"""Fit the multi-head reward model (one head per rule, trained on the rules' ratings) and score the evaluation
pairs; embeddings, models and scores are cached by content hash.

    python experiments/train_rm.py                                  # frozen MiniLM + ridge heads (train=probe)
    python experiments/train_rm.py train=finetune                   # on every GPU here: it starts accelerate launch
    accelerate launch --config_file conf/accelerate/fsdp.yaml experiments/train_rm.py train=finetune   # your choice

Fine-tuning started as one process on a machine with several GPUs starts itself again under ``accelerate launch``,
one process per GPU, data parallel when a copy fits one GPU, else FSDP (encore.node.train_fill;
plan.accelerate_config=single keeps one process, a conf/accelerate/*.yaml file is used as given).

Settings:
    model.name_or_path   the backbone (hub id or folder)
    model.max_length     tokens per text (longer conversations lose their start)
    train.alphas         ridge penalties tried per head (train=probe)
    train.lr             learning rate (train=finetune; paper: 2e-5)
    train.epochs         epochs over the training pairs (paper: 1)
    train.global_batch   pairs per optimiser step over all processes (paper: 32; the same on any GPU count)
    train.batch_size     the most pairs one process takes per micro-step (memory; accumulation makes up the rest)
    train.max_steps      cap on optimiser steps (overrides train.epochs)
    train.lora_r         0: full fine-tuning (paper); e.g. 16: LoRA on all linear layers
    train.save_every     optimiser steps between resumable checkpoints
    train.val_frac       share of pairs held out for each head's validation error
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from _runner import reported, run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_train_rm  # here, not above: --help loads no torch
    from encore.node.train_fill import launch

    with reported(cfg):  # before this process joins accelerate: it opens no CUDA context while the ranks train
        launch(cfg, __file__, list(HydraConfig.get().overrides.task))
    run_job(run_train_rm, cfg)  # the launch's model (and scores) from the cache, or training here alone


if __name__ == "__main__":
    main()
