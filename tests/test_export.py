"""Export through the pipeline: the ENCORE-composed single-score model, loaded by plain ``transformers``, scores the
evaluation pairs exactly as the pipeline's φ = Σ_k w_k ψ_k; the multi-head directory reloads to the same head scores."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from encore.data.pairs import to_messages
from encore.run.pipeline import run_export
from encore.rm.model import MultiHeadRM

from conftest import make_cfg, needs_real_tokenizers

SMALL = ["data.limit=16", "eval.subsets=[donotanswer,xstest-should-respond]", "method=all"]
FINETUNE = ["train=finetune", "train.max_steps=3", "train.batch_size=4", "train.global_batch=4", "train.progress=false",
            "train.lr=1e-3", "train.gradient_checkpointing=false",
            "train.val_frac=0.25"]  # 4 of 16 pairs held out: what bt_optimized and gating are fitted on


def pipeline_phi(run) -> np.ndarray:
    """(M, 2) ENCORE reward from the run's own CSVs."""
    w = pd.read_csv(run / "weights.csv").set_index("method").loc["encore"]
    hs = pd.read_parquet(run / "head_scores.parquet")
    wide = hs.pivot_table(index=["pair_id", "side"], columns="rule", values="score", sort=False)[w.index]
    return (wide.to_numpy() @ w.to_numpy()).reshape(-1, 2), hs


def exported_scores(path, pairs, padding_side: str) -> np.ndarray:
    """Score with transformers alone: the saved tokenizer's chat template, the saved sequence classifier."""
    tok = AutoTokenizer.from_pretrained(path, padding_side=padding_side)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    texts = [tok.apply_chat_template(to_messages(p) + [{"role": "assistant", "content": x.strip()}], tokenize=False)
             for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]) for x in (c, r)]
    enc = tok(texts, padding=True, truncation=True, max_length=256, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[:, 0].double().numpy().reshape(-1, 2)


@pytest.mark.slow  # 10-15 s quiet: kept out of the README's test command (5-minute budget)
@pytest.mark.parametrize("train", ["finetune", "probe"])
def test_decoder_export_scores_like_the_pipeline(tmp_path, cache, train):
    cfg = make_cfg("model=tiny_decoder", *SMALL, *(FINETUNE if train == "finetune" else []), cache=cache)
    m = run_export(cfg, tmp_path / "run")
    from encore.run.pipeline import build

    eval_pairs = build(cfg.eval)
    phi, _ = pipeline_phi(tmp_path / "run")
    ex = m["export"]
    offset = ex["score_offset"]
    assert (offset == 0.0) == (train == "finetune")  # fine-tuned decoder heads are bias-free: exact fold
    meta = json.loads((tmp_path / "run" / "export" / "composed" / "encore.json").read_text())
    assert [r["name"] for r in meta["rules"]] == list(pd.read_csv(tmp_path / "run" / "weights.csv").columns[1:])
    assert len(meta["entropy"]) == len(meta["weights"]) == 10
    for side in ("left", "right"):
        got = exported_scores(ex["composed"], eval_pairs, side)
        np.testing.assert_allclose(got + offset, phi, atol=2e-5)


@needs_real_tokenizers
@pytest.mark.slow  # 10-15 s quiet: kept out of the README's test command (5-minute budget)
def test_llama31_export_scores_like_the_pipeline(tmp_path, cache):
    """Llama-3.1's tokenizer has no pad token and its EOS, <|eot_id|>, closes every turn: the exported classifier
    finds the last token by comparing ids with pad_token_id, so padding with EOS would score the token before the
    response's end. The composed model scores like the pipeline on the real tokenizer."""
    cfg = make_cfg("model=tiny_llama31", "model.max_length=256", *SMALL, cache=cache)
    m = run_export(cfg, tmp_path / "run")
    from encore.run.pipeline import build

    phi, _ = pipeline_phi(tmp_path / "run")
    got = exported_scores(m["export"]["composed"], build(cfg.eval), "right")
    np.testing.assert_allclose(got + m["export"]["score_offset"], phi, atol=2e-5)


def test_encoder_export_round_trips_multihead_and_explains_the_skip(tmp_path, cache):
    m = run_export(make_cfg(*SMALL, cache=cache), tmp_path / "run")  # tiny BERT, mean pooling, probe
    assert m["export"]["composed"] is None and "pooling" in m["export"]["composed_skipped"]
    rm = MultiHeadRM.load(m["export"]["multihead"])
    from encore.run.pipeline import build
    from encore.rm.model import score_ids

    cfg = make_cfg(*SMALL, cache=cache)
    enc, eval_pairs = build(cfg.model), build(cfg.eval)
    scores = score_ids(rm, enc.tok, enc.tokenize(enc.pair_texts(eval_pairs), padding=False)["input_ids"])
    _, hs = pipeline_phi(tmp_path / "run")
    wide = hs.pivot_table(index=["pair_id", "side"], columns="rule", values="score", sort=False)[rm_rules(m)]
    np.testing.assert_allclose(scores, wide.to_numpy(), atol=2e-5)


def rm_rules(m) -> list[str]:
    return [r["name"] for r in json.loads(open(m["export"]["multihead"] + "/encore.json").read())["rules"]]


def test_export_method_without_weights_fails_before_writing(tmp_path, cache):
    with pytest.raises(ValueError, match="export.method"):
        run_export(make_cfg(*SMALL, "export.method=gating", cache=cache), tmp_path / "run")
    assert not (tmp_path / "run").exists()
