"""Fit the multi-head reward model (one head per rule, trained on the rules' ratings) and score the evaluation
pairs; embeddings, models and scores are cached by content hash.

    python experiments/train_rm.py                                  # frozen MiniLM + ridge heads (train=probe)
    accelerate launch --config_file conf/accelerate/fsdp.yaml experiments/train_rm.py train=finetune

Settings:
    model.name_or_path   the backbone (hub id or folder)
    model.max_length     tokens per text (longer conversations lose their start)
    train.alphas         ridge penalties tried per head (train=probe)
    train.lr             learning rate (train=finetune; paper: 2e-5)
    train.epochs         epochs over the training pairs (paper: 1)
    train.batch_size     pairs per process per micro-step
    train.grad_accum     micro-steps per optimiser step
    train.max_steps      cap on optimiser steps (overrides train.epochs)
    train.lora_r         0: full fine-tuning (paper); e.g. 16: LoRA on all linear layers
    train.save_every     optimiser steps between resumable checkpoints
    train.val_frac       share of pairs held out for each head's validation error
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from encore.run.pipeline import run_train_rm  # here, not above: --help loads no torch

    run_job(run_train_rm, cfg)


if __name__ == "__main__":
    main()
