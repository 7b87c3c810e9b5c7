"""Learned composition on synthetic pairs whose preference depends on two of five rule signals: BT-optimised weights
and the ArmoRM-style gate both beat chance clearly and put most of their weight on the two informative rules. The gate
reads prompts as the reward model reads them, through its own (fine-tuned) backbone."""

from pathlib import Path

import numpy as np
import pytest
import torch

from encore.compose import bt_fit_weights
from encore.gating import GatingNet, fit_gating, gate_entropy

INFORMATIVE = [0, 1]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Head scores (n, 2, 5) in [0, 1] and prompt embeddings (n, 16). The human prefers the response with the larger
    ψ_0 + ψ_1 (with logistic noise); rules 2-4 are independent noise. Returned with the preferred side first."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(size=(n, 2, 5))
    util = s[..., INFORMATIVE].sum(-1) * 6 + rng.logistic(size=(n, 2))
    swap = util[:, 1] > util[:, 0]
    s[swap] = s[swap][:, ::-1]
    return s, rng.normal(size=(n, 16))


def accuracy(rewards: np.ndarray) -> float:
    return float((rewards[:, 0] > rewards[:, 1]).mean())


def test_bt_weights_find_the_informative_rules():
    s, _ = synthetic(2000, 0)
    w = bt_fit_weights(s[:, 0] - s[:, 1])
    test, _ = synthetic(2000, 1)
    assert accuracy(test @ w) > 0.75  # chance is 0.5
    assert np.abs(w[INFORMATIVE]).sum() > 0.8 * np.abs(w).sum()


def test_gating_finds_the_informative_rules_and_reports_entropy():
    s, x = synthetic(2000, 0)
    fit = fit_gating(x, s, hidden=32, epochs=60, lr=3e-3, seed=0)
    assert fit.losses[-1] < fit.losses[0]
    test, xt = synthetic(2000, 1)
    assert accuracy(fit.rewards(xt, test)) > 0.75
    g = fit.weights(xt)
    np.testing.assert_allclose(g.sum(1), 1.0, atol=1e-6)
    assert g[:, INFORMATIVE].sum(1).mean() > 0.7
    h = gate_entropy(g)
    assert (h >= 0).all() and (h <= np.log(5) + 1e-9).all()


def test_gate_entropy_limits_and_reward_shape():
    np.testing.assert_allclose(gate_entropy(np.full((1, 4), 0.25)), [np.log(4)])
    np.testing.assert_allclose(gate_entropy(np.eye(3)), [0, 0, 0], atol=1e-9)
    net = GatingNet(8, 3)
    r = net.reward(torch.zeros(5, 8), torch.ones(5, 2, 3))
    torch.testing.assert_close(r, torch.full((5, 2), 10.0))  # softmax weights sum to 1; β starts at 10


@pytest.mark.parametrize("text_format", ["plain", "chat"])
def test_gate_reads_the_prompt_as_the_reward_model_reads_it(tmp_path, text_format):
    from encore.rm.backbone import Encoder
    from encore.data.demo import load_demo
    from encore.rm.probe import RidgeHeads
    from encore.rm.tiny import tiny_causal_config

    enc = Encoder("tiny-llama", tokenizer="tiny-bpe", config=tiny_causal_config("llama"), pooling="last",
                  text_format=text_format, device="cpu", dtype="float32", max_length=128)
    pairs = load_demo("train").iloc[:6]
    prompts = enc.prompt_texts(list(pairs["prompt"]))
    full = enc.pair_texts(pairs)[0::2]
    assert all(f.startswith(p) and len(f) > len(p) for p, f in zip(prompts, full))  # the RM input's own opening
    got = RidgeHeads().prompt_embeddings(pairs, enc, tmp_path)
    np.testing.assert_allclose(got, enc.encode(prompts), atol=1e-6)


def test_after_fine_tuning_the_gate_reads_the_fine_tuned_backbone(tmp_path):
    from encore.rm.backbone import Encoder
    from encore.data.demo import load_demo
    from encore.rm.finetune import Finetune
    from encore.rm.model import MultiHeadRM, score_ids
    from encore.rm.tiny import tiny_causal_config

    enc = Encoder("tiny-llama", tokenizer="tiny-bpe", config=tiny_causal_config("llama"), pooling="last",
                  text_format="chat", device="cpu", dtype="float32", max_length=128)
    pairs = load_demo("train").iloc[:16]
    y = np.random.default_rng(0).uniform(size=(16, 2, 3))
    ft = Finetune(lr=1e-3, batch_size=8, max_steps=4, val_frac=0.0, warmup_ratio=0.0, progress=False)
    _, report = ft.fit_score(pairs, y, pairs, enc, tmp_path)
    got = ft.prompt_embeddings(pairs, enc, tmp_path, report)
    ids, _ = enc.token_ids(enc.prompt_texts(list(pairs["prompt"])))
    tuned = score_ids(MultiHeadRM.load(report["model_dir"]), enc.tok, ids, pooled=True)
    np.testing.assert_allclose(got, tuned, atol=1e-5)
    frozen = enc.encode(enc.prompt_texts(list(pairs["prompt"])))
    assert np.abs(got - frozen).max() > 1e-3  # not the frozen backbone any more


def _ctx_with_two_inputs(n: int = 300, k: int = 4):
    """A fit context whose head scores and rater ratings of the training pairs differ (heads: the rater's ratings
    with rule 0 and rule 3 swapped and noise; held-out heads: other noise, present on the first 200 pairs only),
    with a stand-in trainer that embeds prompts as fixed random vectors (looked up by the pairs' ``row``)."""
    from types import SimpleNamespace

    import pandas as pd

    from encore.methods import FitContext

    s, x = synthetic(n, 2)
    ratings = s[..., :k]
    heads = ratings[..., ::-1] + 0.05 * np.random.default_rng(3).normal(size=ratings.shape)
    held = ratings[..., ::-1] + 0.2 * np.random.default_rng(4).normal(size=ratings.shape)
    held[200:] = np.nan  # as the fine-tune's: only its held-out split has held-out scores
    train, ev = pd.DataFrame({"row": np.arange(n)}), pd.DataFrame({"row": np.arange(50)})
    emb = {"train": x, "eval": x[:50]}
    trainer = SimpleNamespace(prompt_embeddings=lambda pairs, enc, cache, rep: emb["eval" if pairs is ev else "train"]
                              [pairs["row"].to_numpy()])
    return FitContext(rules=list("abcd"), entropy=np.zeros(k), accuracy=np.zeros(k),
                      delta=ratings[:, 0] - ratings[:, 1], train_ratings=ratings, train_scores=heads,
                      held_out_scores=held, held_out_basis="the test's held-out split", eval_scores=heads[:50],
                      train_pairs=train, eval_pairs=ev, trainer=trainer)


def _bt_by_hand(d: np.ndarray, l2: float) -> np.ndarray:
    """argmin_w mean log(1 + exp(-d·w)) + l2/2 |w|², by BFGS on finite differences (not encore's code), Σ|w| = 1."""
    from scipy import optimize

    loss = lambda w: np.mean(np.logaddexp(0, -(d @ w))) + 0.5 * l2 * w @ w  # noqa: E731
    w = optimize.minimize(loss, np.zeros(d.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    return w / np.abs(w).sum()


@pytest.mark.parametrize("inputs,fit_on,rows", [("heads", "held_out", 200), ("heads", "in_sample", 300),
                                                  ("ratings", "held_out", 300)])
def test_bt_weights_and_the_gate_fit_on_the_same_declared_inputs(inputs, fit_on, rows):
    """Both learned baselines read the same training inputs: by default the heads' held-out scores of the pairs
    that have them (never the heads' in-sample scores of their own training pairs), the in-sample scores only with
    fit_on=in_sample, the rater's ratings of every pair with inputs=ratings. The BT weights are the BT optimum of
    that input's Δ, computed here by hand, and the gate is exactly the gate fitted on those pairs' prompts."""
    from encore.methods import BTOptimized, Gating

    ctx = _ctx_with_two_inputs()
    x = {"held_out": ctx.held_out_scores, "in_sample": ctx.train_scores}[fit_on] if inputs == "heads" else ctx.train_ratings
    x = x[:rows]
    bt = BTOptimized(inputs=inputs, fit_on=fit_on)
    np.testing.assert_allclose(bt.weights(ctx), _bt_by_hand(x[:, 0] - x[:, 1], 1e-3), atol=2e-5)
    gate = Gating(epochs=5, inputs=inputs, fit_on=fit_on)
    got, _ = gate.rewards(ctx)
    fit = fit_gating(ctx.trainer.prompt_embeddings(ctx.train_pairs, None, None, None)[:rows], x, gate.hidden,
                     gate.epochs, gate.lr, gate.weight_decay, gate.dropout, seed=gate.seed)
    np.testing.assert_array_equal(got[0], fit.rewards(ctx.trainer.prompt_embeddings(ctx.eval_pairs, None, None, None),
                                                     ctx.eval_scores))
    said = {"held_out": "the test's held-out split", "in_sample": "in-sample head scores of all 300"}[fit_on]
    assert (said if inputs == "heads" else "the rater's ratings of all 300") in bt.fitted_on(ctx) == gate.fitted_on(ctx)
    assert BTOptimized().inputs == Gating().inputs == "heads"
    assert BTOptimized().fit_on == Gating().fit_on == "held_out"  # in-sample only on request
    with pytest.raises(ValueError, match="method.inputs='both'"):
        BTOptimized(inputs="both")
    with pytest.raises(ValueError, match="method.fit_on='train'"):
        Gating(fit_on="train")


def test_held_out_fit_without_held_out_scores_names_the_fix():
    from encore.methods import BTOptimized

    ctx = _ctx_with_two_inputs()
    ctx.held_out_scores = np.full_like(ctx.train_scores, np.nan)  # train.val_frac=0 / train.cross_fit=0
    with pytest.raises(ValueError, match="train.val_frac.*train.cross_fit.*method.fit_on=in_sample"):
        BTOptimized().weights(ctx)


def test_fine_tuned_heads_held_out_scores_are_their_held_out_split(tmp_path):
    """Under train=finetune the held-out head scores are the scores of the val_frac split the model never trained
    on (the pairs named in the model's metadata) and NaN elsewhere; the report says so. A tiny random Llama."""
    from encore.cache.artifacts import read_json
    from encore.data.demo import load_demo
    from encore.rm.backbone import Encoder
    from encore.rm.finetune import Finetune
    from encore.rm.model import META
    from encore.rm.tiny import tiny_causal_config

    enc = Encoder("tiny-llama", tokenizer="tiny-bpe", config=tiny_causal_config("llama"), pooling="last",
                  text_format="chat", device="cpu", dtype="float32", max_length=128)
    pairs = load_demo("train").iloc[:16]
    y = np.random.default_rng(0).uniform(size=(16, 2, 3))
    ft = Finetune(lr=1e-3, batch_size=8, max_steps=2, val_frac=0.25, warmup_ratio=0.0, progress=False)
    arrays, report = ft.fit_score(pairs, y, pairs.iloc[:2], enc, tmp_path)
    val = np.asarray(read_json(Path(report["model_dir"]) / META)["val_pairs"], dtype=int)
    held = np.isfinite(arrays["held_out_scores"]).all(axis=(1, 2))
    assert len(val) >= 4 and np.flatnonzero(held).tolist() == sorted(val.tolist())
    np.testing.assert_array_equal(arrays["held_out_scores"][val], arrays["train_scores"][val])
    assert f"{len(val)} of 16 training pairs, never trained on" in report["held_out_basis"]
