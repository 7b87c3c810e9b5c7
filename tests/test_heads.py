import numpy as np
import pytest
import torch
from torch.testing import assert_close

from encore.rm.backbone import Encoder, pool
from encore.data.demo import load_demo
from encore.rm.probe import RidgeHeads, embed_pairs

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128}


def test_ridge_heads_recover_linear_targets_and_mask_missing():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 2, 8))
    true_w = rng.normal(size=(8, 3))
    y = 0.5 + 0.05 * (emb @ true_w) + 0.01 * rng.normal(size=(300, 2, 3))  # (300, 2, 3), linear + noise
    y_missing = y.copy()
    y_missing[:50, :, 2] = np.nan
    heads = RidgeHeads(alphas=(1e-3, 1.0, 1e3), seed=0).fit(emb, y_missing)
    pred = heads.predict(emb)
    assert pred.shape == (300, 2, 3)
    corr = [np.corrcoef(pred[..., k].ravel(), y[..., k].ravel())[0, 1] for k in range(3)]
    assert min(corr) > 0.98
    assert np.isfinite(heads.W).all()


def test_ridge_rejects_bad_config():
    with pytest.raises(ValueError, match="train.alphas"):
        RidgeHeads(alphas=(0.0,))


def test_last_token_pooling_is_padding_side_invariant():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(h, right, "last").ravel().tolist() == [1.0, 7.0]
    assert pool(h, left, "last").ravel().tolist() == [3.0, 7.0]
    assert_close(pool(h, right, "mean").ravel(), torch.tensor([0.5, 5.5]))


def test_encoder_batching_does_not_change_embeddings_and_cache_hits(tmp_path):
    pairs = load_demo("eval").iloc[:12]
    enc = Encoder("tiny", tokenizer="embedded:all-MiniLM-L6-v2", config=TINY, device="cpu", dtype="float32",
                  batch_size=5, pooling="mean")
    a, hit_a = embed_pairs(pairs, enc, tmp_path, progress=False)
    enc1 = Encoder("tiny", tokenizer="embedded:all-MiniLM-L6-v2", config=TINY, device="cpu", dtype="float32",
                   batch_size=1, pooling="mean")
    single = enc1.encode([f"{pairs.loc[0, 'prompt']}\n\nAssistant: {pairs.loc[0, 'chosen']}"])
    assert_close(torch.from_numpy(a[0, 0]), torch.from_numpy(single[0]), atol=1e-4, rtol=1e-4)
    b, hit_b = embed_pairs(pairs, enc1, tmp_path, progress=False)  # batch size is not part of the key
    assert (hit_a, hit_b) == (False, True)
    np.testing.assert_array_equal(a, b)


def test_validation_split_keeps_every_pair_of_a_prompt_together():
    from encore.data.pairs import DataError
    from encore.rm.splits import validation_split

    prompts = [f"p{i // 3}" for i in range(30)]  # 10 prompts, 3 pairs each
    val, tr = validation_split(prompts, 0.2, seed=0)
    assert len(val) == 6 and sorted(np.concatenate([val, tr])) == list(range(30))
    assert not {prompts[i] for i in val} & {prompts[i] for i in tr}  # no conversation on both sides
    val, tr = validation_split(prompts, 0.99, seed=0)
    assert len(tr) == 3  # one prompt always stays for training
    assert len(validation_split(prompts, 0.0, seed=0)[0]) == 0
    with pytest.raises(DataError, match="share one prompt"):
        validation_split(["same"] * 5, 0.2, seed=0)


def test_ridge_alpha_is_the_validation_mse_minimiser():
    """Noise targets pick the largest penalty, a clean linear signal the smallest; and each head's α is the one whose
    validation MSE, recomputed here on the same split, is lowest."""
    from encore.rm.splits import validation_split
    from encore.rm.probe import _ridge_solve

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(200, 2, 20))
    y = np.stack([0.5 + 0.1 * emb[..., 0], rng.uniform(size=(200, 2))], axis=-1)  # head 0 linear, head 1 noise
    alphas = (1e-3, 1.0, 1e4)
    heads = RidgeHeads(alphas=alphas, seed=3).fit(emb, y)
    assert heads.alpha.tolist() == [1e-3, 1e4]
    val, tr = validation_split(range(200), 0.2, 3, at_least_one=True)
    X, Y = emb.reshape(-1, 20), y.reshape(-1, 2)
    rows = lambda p: np.concatenate([2 * p, 2 * p + 1])  # noqa: E731
    t, v = rows(tr), rows(val)
    W = _ridge_solve(X[t] - X[t].mean(0), Y[t] - Y[t].mean(0), alphas)
    mse = (((X[v] - X[t].mean(0)) @ W + Y[t].mean(0) - Y[v]) ** 2).mean(1)  # (A, K)
    np.testing.assert_allclose(heads.val_mse, mse.min(0))
    assert [alphas[i] for i in mse.argmin(0)] == heads.alpha.tolist()


def test_cross_fitted_head_scores_come_from_heads_that_never_saw_the_pair():
    """Each training pair's held-out score is what heads fitted on the other folds (whole prompts) predict for it,
    recomputed here fold by fold; it differs from the in-sample score, which memorises noise targets, and on noise
    targets only the in-sample scores 'predict' the pairs' own ratings (the flattering that the default avoids)."""
    from encore.rm.probe import cross_fitted_scores
    from encore.rm.splits import group_folds

    rng = np.random.default_rng(2)
    n, d = 120, 60
    prompts = [f"p{i // 2}" for i in range(n)]  # two pairs per conversation
    emb, y = rng.normal(size=(n, 2, d)), rng.uniform(size=(n, 2, 2))  # ratings: pure noise
    heads = RidgeHeads(alphas=(1e-3,), cross_fit=4)
    got = cross_fitted_scores(emb, y, heads, prompts)
    folds = group_folds(prompts, 4, heads.seed)
    assert sorted(np.bincount(folds)) == [30, 30, 30, 30]
    assert all(len({folds[i] for i in range(n) if prompts[i] == p}) == 1 for p in set(prompts))  # prompts whole
    for f in range(4):
        out = folds == f
        ref = RidgeHeads(alphas=(1e-3,), cross_fit=0).fit(emb[~out], y[~out], [p for p, o in zip(prompts, out) if not o])
        np.testing.assert_allclose(got[out], ref.predict(emb[out]))
    in_sample = RidgeHeads(alphas=(1e-3,)).fit(emb, y, prompts).predict(emb)
    fit_err = lambda s: float(np.mean((s - y) ** 2))  # noqa: E731
    assert fit_err(in_sample) < 0.5 * fit_err(got)  # in sample, noise looks learnt; held out, it does not
    assert np.isnan(cross_fitted_scores(emb, y, RidgeHeads(cross_fit=0), prompts)).all()
    with pytest.raises(ValueError, match="train.cross_fit=1"):
        RidgeHeads(cross_fit=1)
