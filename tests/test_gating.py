"""Learned composition on synthetic pairs whose preference depends on two of five rule signals: BT-optimised weights
and the ArmoRM-style gate both beat chance clearly and put most of their weight on the two informative rules. The gate
reads prompts as the reward model reads them, through its own (fine-tuned) backbone."""

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
    with rule 0 and rule 3 swapped and noise), with a stand-in trainer that embeds prompts as fixed random vectors."""
    from types import SimpleNamespace

    from encore.methods import FitContext

    s, x = synthetic(n, 2)
    ratings = s[..., :k]
    heads = ratings[..., ::-1] + 0.05 * np.random.default_rng(3).normal(size=ratings.shape)
    emb = {"train": x, "eval": x[:50]}
    trainer = SimpleNamespace(prompt_embeddings=lambda pairs, enc, cache, rep: emb[pairs])
    return FitContext(rules=list("abcd"), entropy=np.zeros(k), accuracy=np.zeros(k),
                      delta=ratings[:, 0] - ratings[:, 1], train_ratings=ratings, train_scores=heads,
                      eval_scores=heads[:50], train_pairs="train", eval_pairs="eval", trainer=trainer)


def _bt_by_hand(d: np.ndarray, l2: float) -> np.ndarray:
    """argmin_w mean log(1 + exp(-d·w)) + l2/2 |w|², by BFGS on finite differences (not encore's code), Σ|w| = 1."""
    from scipy import optimize

    loss = lambda w: np.mean(np.logaddexp(0, -(d @ w))) + 0.5 * l2 * w @ w  # noqa: E731
    w = optimize.minimize(loss, np.zeros(d.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    return w / np.abs(w).sum()


@pytest.mark.parametrize("inputs", ["heads", "ratings"])
def test_bt_weights_and_the_gate_fit_on_the_same_declared_inputs(inputs):
    """Both learned baselines read the same training inputs (heads by default; ratings on request): the BT weights
    are the BT optimum of that input's Δ, computed here by hand, and the gate is exactly the gate fitted on it."""
    from encore.methods import BTOptimized, Gating

    ctx = _ctx_with_two_inputs()
    x = ctx.train_scores if inputs == "heads" else ctx.train_ratings
    np.testing.assert_allclose(BTOptimized(inputs=inputs).weights(ctx), _bt_by_hand(x[:, 0] - x[:, 1], 1e-3),
                               atol=2e-5)
    gate = Gating(epochs=5, inputs=inputs)
    got, _ = gate.rewards(ctx)
    fit = fit_gating(ctx.trainer.prompt_embeddings("train", None, None, None), x, gate.hidden, gate.epochs, gate.lr,
                     gate.weight_decay, gate.dropout, seed=gate.seed)
    np.testing.assert_array_equal(got[0], fit.rewards(ctx.trainer.prompt_embeddings("eval", None, None, None),
                                                     ctx.eval_scores))
    assert BTOptimized().inputs == Gating().inputs == "heads"
    with pytest.raises(ValueError, match="method.inputs='both'"):
        BTOptimized(inputs="both")
