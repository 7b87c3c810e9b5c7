"""experiment=paper_main_table end to end offline on the paper's real tokenizers: a tiny random Llama of the
128,256-token vocabulary rates with the Llama-3-Instruct tokenizer (rater=tiny_llama3) and is the Llama-3.1 backbone
(model=tiny_llama31), through every stage the experiment has: rate, study, fine-tune (train=finetune_1gpu: bf16,
torchao AdamW8bit, gradient checkpointing), the BT single head, the gate, the LLM judge, evaluate, figures, export.
What it does not prove: anything about the 70B/8B weights, GPU kernels or memory (experiments/gpu_check.py does the
GPU part), or RewardBench itself (the eval is the embedded demo in RewardBench's layout)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from encore.run.pipeline import run_export

from conftest import SHARED_HH, make_cfg, needs_real_tokenizers

DRY_RUN = ["experiment=paper_main_table", "rater=tiny_llama3", "model=tiny_llama31", "eval=demo",
           "eval.subsets=[donotanswer,xstest-should-respond]", "train.max_steps=2", "train.global_batch=4",
           "train.batch_size=4", "train.progress=false", "method.random.n_seeds=2", "method.gating.epochs=20",
           "train.val_frac=0.25"]  # a quarter of the tiny set held out: what bt_optimized and gating are fitted on


@needs_real_tokenizers
@pytest.mark.slow
@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_paper_main_table_runs_end_to_end_on_the_real_tokenizers(tmp_path, cache):
    cfg = make_cfg(*DRY_RUN, "data=hh_rlhf_harmless", f"data.path={SHARED_HH}", "data.limit=12", cache=cache)
    assert cfg.train.optim == "adamw_8bit" and cfg.model.tokenizer == "shared:llama31"
    m = run_export(cfg, tmp_path / "run")
    run = tmp_path / "run"
    methods = set(pd.read_csv(run / "main_table.csv")["method"])
    assert {"encore", "uniform", "random", "gating", "llm_judge", "bt_single_head", "bt_optimized"} <= methods
    ratings = pd.read_parquet(run / "ratings.parquet")
    assert m["train_pairs"] == 12 and len(ratings) and {"rating", "heads", "main_table", "export"} <= set(m)
    meta = json.loads((run / "export" / "composed" / "encore.json").read_text())
    assert meta["method"] == "encore" and len(meta["weights"]) == 10 and np.isfinite(meta["weights"]).all()
    cfg_saved = json.loads((run / "export" / "composed" / "config.json").read_text())
    assert cfg_saved["vocab_size"] == 128256 and cfg_saved["pad_token_id"] == 128002


SMOLLM2_DRY_RUN = ["experiment=paper_main_table", "rater=smollm2", "model=smollm2", "model.max_length=256", "eval=demo",
                   "eval.subsets=[donotanswer]", "+eval.limit=6", "train.max_steps=2", "train.global_batch=2",
                   "train.batch_size=2", "train.progress=false", "~method.bt_single_head", "~method.gating",
                   "method.random.n_seeds=2",  # one fine-tuning: the K-head RM (bt_single_head would be a second)
                   "train.val_frac=0.5"]  # 2 of the 4 pairs held out: what bt_optimized is fitted on


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_paper_path_in_miniature_on_the_trained_smollm2(tmp_path, cache, smollm2):
    """The same experiment with a trained model in every LLM role: SmolLM2-135M-Instruct rates 4 HH-RLHF pairs,
    judges the eval pairs in both orders, and is the backbone fine-tuned by train=finetune_1gpu (bf16, torchao
    AdamW8bit) for 2 steps; the composed export, loaded by transformers alone, scores like the pipeline's φ. What it
    does not prove: that these numbers mean anything (4 pairs, 2 steps, a 135 M model)."""
    from test_export import exported_scores, pipeline_phi

    from encore.run.pipeline import build

    cfg = make_cfg(*SMOLLM2_DRY_RUN, "data=hh_rlhf_harmless", f"data.path={SHARED_HH}", "data.limit=4", cache=cache)
    assert cfg.train.optim == "adamw_8bit" and cfg.rater.model == cfg.model.name_or_path == "smollm2"
    run = tmp_path / "run"
    m = run_export(cfg, run)
    assert m["train_pairs"] == 4 and m["rating"]["n_new"] == 4 * 2 * 10 and m["rating"]["n_missing"] == 0
    methods = set(pd.read_csv(run / "main_table.csv")["method"])
    assert {"encore", "uniform", "llm_judge"} <= methods and not {"bt_single_head", "gating"} & methods
    phi, _ = pipeline_phi(run)
    for side in ("left", "right"):  # SmolLM2 pads with <|im_end|>; every text ends in the template's newline after it
        got = exported_scores(m["export"]["composed"], build(cfg.eval), side)
        np.testing.assert_allclose(got + m["export"]["score_offset"], phi, atol=2e-5)
