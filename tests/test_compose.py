import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.testing import assert_close

from encore import compose

H = np.array([0.5, 1.0, 2.0])
entropies = arrays(np.float64, st.integers(2, 12), elements=st.floats(0, 5))


def test_encore_exact_values():
    # softmax(-H/2) = exp([-0.25, -0.5, -1]) / sum
    e = np.exp([-0.25, -0.5, -1.0])
    assert_close(compose.encore_weights(H, 2.0), e / e.sum())


def test_encore_limits():
    assert_close(compose.encore_weights(H, 1e9), np.full(3, 1 / 3))
    assert_close(compose.encore_weights(H, 1e-4), np.array([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("tau", [0, -1, float("inf"), float("nan")])
def test_encore_rejects_bad_tau(tau):
    with pytest.raises(ValueError, match="method.tau"):
        compose.encore_weights(H, tau)


@given(entropies, st.floats(0.01, 100), st.floats(-50, 50))
@settings(max_examples=60, deadline=None)
def test_encore_simplex_and_shift_invariance(h, tau, c):
    w = compose.encore_weights(h, tau)
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-12
    assert_close(compose.encore_weights(h + c, tau), w, atol=1e-10, rtol=1e-7)
    # lower entropy never gets less weight
    order = np.argsort(h, kind="stable")
    assert np.all(np.diff(w[order]) <= 1e-12)


def test_uniform_random_single_topk():
    assert_close(compose.uniform_weights(4), np.full(4, 0.25))
    w = compose.dirichlet_weights(5, 10, seed=3)
    assert w.shape == (10, 5) and np.allclose(w.sum(1), 1) and (w >= 0).all()
    assert_close(w, compose.dirichlet_weights(5, 10, seed=3))  # seeded
    assert not np.allclose(w, compose.dirichlet_weights(5, 10, seed=4))
    assert_close(compose.best_single_rule_weights(np.array([0.6, 0.8, 0.8])), np.array([0.0, 1.0, 0.0]))
    r = compose.random_single_rule_weights(4, 7, seed=0)
    assert r.shape == (7, 4) and np.all(r.sum(1) == 1)
    assert_close(compose.topk_weights(np.array([0.3, 0.1, 0.2, 0.9]), 2), np.array([0.0, 0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="method.k"):
        compose.topk_weights(H, 4)


def test_compose_shapes():
    s = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    assert_close(compose.compose(s, np.array([1.0, 0, 0])), s[..., 0])
    out = compose.compose(s, np.array([[1.0, 0, 0], [0, 0, 1.0]]))
    assert out.shape == (2, 2, 2)
    assert_close(out[1], s[..., 2])


def test_bt_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    d, w = rng.normal(size=(50, 4)), rng.normal(size=4)
    g = compose.bt_grad(w, d, l2=0.1)
    eps = 1e-6
    num = np.array([(compose.bt_loss(w + eps * e, d, 0.1) - compose.bt_loss(w - eps * e, d, 0.1)) / (2 * eps)
                    for e in np.eye(4)])
    assert_close(g, num, atol=1e-6, rtol=1e-5)


def test_bt_fit_drops_missing_and_errors_when_none_left():
    d = np.array([[1.0, np.nan], [0.5, 0.2], [0.3, -0.1]])
    np.testing.assert_allclose(compose.bt_fit_weights(d), compose.bt_fit_weights(d[1:]))  # the NaN row is dropped
    assert not np.allclose(compose.bt_fit_weights(np.nan_to_num(d)), compose.bt_fit_weights(d[1:]))  # and it mattered
    with pytest.raises(ValueError, match="no pair"):
        compose.bt_fit_weights(np.full((2, 2), np.nan))
