"""The paper's theoretical claim, tested on rules that differ in rating entropy.

What the paper states. Its abstract (arXiv 2503.20995, AAAI 2026): "rules with high rating entropy ... yield negligible
weights under the Bradley–Terry loss during weight optimization". The theorem's own text could not be read from here
(only the paper's opening is reachable), so this file tests that statement under an explicit model where a rule's
entropy and its preference signal come from one source, rater noise, and says where entropy alone is not enough.

The model. Each pair holds one safe response (q = 1) and one unsafe (q = 0); the human prefers the safe one with
probability ρ. Under rule k the rater reports a response's q truthfully with probability 1 - λ_k and otherwise a
rating U ~ Uniform(0, 1), drawn afresh per response and rule: λ_k is the rater's noise on that rule. Then, exactly:
    ratings:  (1 - λ) (½ δ_0 + ½ δ_1) + λ Uniform(0, 1); with B bins p_b = λ/B, plus (1 - λ)/2 in the two end bins.
              Its entropy H(λ) is concave in λ with its maximum ln B at λ = 1, so it rises from ln 2 to ln B;
    margin:   Δψ_k = ψ_k(chosen) - ψ_k(rejected); given the safe side S = ±1 (P(+1) = ρ) it is S with probability
              (1 - λ)², S·Uniform(0, 1) with 2λ(1 - λ), and U - U' (triangular on [-1, 1]) with λ²;
    gradient: the BT loss L(w) = mean_i -log σ(Σ_k w_k Δψ_ik) has ∂L/∂w_k at w = 0 equal to -½ E[Δψ_k]
              = -½ (1 - λ_k)(2ρ - 1): it shrinks linearly to 0 as the entropy rises to its maximum;
    weight:   rule k alone has the BT optimum w*(λ), the root of E[Δψ σ(-w Δψ)] = 0 (computed here by quadrature):
              logit ρ = 1.386 at λ = 0, then 1.504, 1.495, 1.136 at λ = 0.25, 0.5, 0.75, and exactly 0 at λ = 1
              (Δψ = U - U' is symmetric). Not monotone near λ = 0: a little noise shrinks the margins and BT
              answers with a larger weight; from there it falls to 0. Fitted jointly, a rule with λ = 1 is
              independent of everything else and its optimal weight is exactly 0.
Entropy alone does not fix the gradient: squeezing a rule's ratings towards ½ lowers its entropy and keeps its
accuracy, yet scales its gradient at w = 0 down by the same factor (the last test). The statement holds where high
entropy is rater noise, which is the paper's reading of it.
"""

import numpy as np
import pytest
from scipy import integrate, optimize

from encore.compose import bt_fit_weights, bt_grad
from encore.entropy import rating_entropy, rule_accuracy

RHO, B, N = 0.8, 10, 20000
LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def population_entropy(lam: float, bins: int = B) -> float:
    """Binned entropy (nats) of (1 - λ)(½ δ_0 + ½ δ_1) + λ Uniform(0, 1)."""
    p = np.full(bins, lam / bins)
    p[[0, -1]] += (1 - lam) / 2
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def expect(f, lam: float) -> float:
    """E[f(Δψ)] under the model, by quadrature over its three parts for each safe side S = ±1."""
    def given(s: float) -> float:
        uniform = integrate.quad(lambda u: f(s * u), 0, 1)[0]
        triangle = integrate.quad(lambda t: (1 - abs(t)) * f(t), -1, 1, points=[0])[0]
        return (1 - lam) ** 2 * f(s) + 2 * lam * (1 - lam) * uniform + lam ** 2 * triangle
    return RHO * given(1.0) + (1 - RHO) * given(-1.0)


def population_weight(lam: float) -> float:
    """The single-rule BT optimum: the root in w of E[Δψ σ(-w Δψ)] = 0."""
    if lam == 1:
        return 0.0
    return optimize.brentq(lambda w: expect(lambda d: d / (1 + np.exp(w * d)), lam), -10, 10, xtol=1e-12)


def population_fisher(lam: float, w: float) -> float:
    """E[Δψ² σ(wΔψ) σ(-wΔψ)]: the single-rule fit's standard error is 1 / sqrt(N · this)."""
    return expect(lambda d: d * d / (4 * np.cosh(w * d / 2) ** 2), lam)


@pytest.fixture(scope="module")
def sample():
    """(N, K) margins Δψ and (2N, K) ratings of the K = len(LAMBDAS) rules on N pairs drawn from the model."""
    rng = np.random.default_rng(0)
    safe_chosen = rng.uniform(size=N) < RHO
    q = np.stack([safe_chosen, ~safe_chosen], 1).astype(float)[..., None]  # (N, 2, 1): q of chosen, rejected
    shape = (N, 2, len(LAMBDAS))
    noisy = rng.uniform(size=shape) < np.array(LAMBDAS)  # where the rater answers at random
    psi = np.where(noisy, rng.uniform(size=shape), q)  # (N, 2, K)
    return psi[:, 0] - psi[:, 1], psi.reshape(-1, len(LAMBDAS)), psi


def test_the_rules_differ_in_entropy_as_the_model_says(sample):
    _, ratings, _ = sample
    H = np.array([population_entropy(lam) for lam in LAMBDAS])
    assert H[0] == pytest.approx(np.log(2)) and H[-1] == pytest.approx(np.log(10)) and np.all(np.diff(H) > 0.1)
    np.testing.assert_allclose(rating_entropy(ratings, B), H, atol=0.01)  # 40,000 ratings per rule


def test_the_gradient_at_zero_shrinks_to_zero_as_entropy_rises(sample):
    delta, _, _ = sample
    g = bt_grad(np.zeros(len(LAMBDAS)), delta)
    expected = -0.5 * (1 - np.array(LAMBDAS)) * (2 * RHO - 1)  # -0.3, -0.225, -0.15, -0.075, 0
    se = 0.5 * delta.std(axis=0) / np.sqrt(N)
    assert np.all(np.abs(g - expected) < 4 * se), (g, expected, se)
    assert np.all(np.diff(np.abs(expected)) < 0) and expected[-1] == 0


def test_each_rules_fitted_weight_falls_to_zero_as_entropy_rises(sample):
    delta, _, _ = sample
    w_star = np.array([population_weight(lam) for lam in LAMBDAS])
    assert w_star[0] == pytest.approx(np.log(RHO / (1 - RHO)), abs=1e-9) and w_star[-1] == 0
    np.testing.assert_allclose(w_star[1:4], [1.5037, 1.4948, 1.1358], atol=1e-4)
    assert np.all(np.diff(w_star[1:]) < 0)  # falling from λ = 0.25 on (see the module docstring)
    fitted = np.array([bt_fit_weights(delta[:, [k]], l2=0.0, normalise=False)[0] for k in range(len(LAMBDAS))])
    se = 1 / np.sqrt(N * np.array([population_fisher(lam, w) for lam, w in zip(LAMBDAS, w_star)]))
    assert np.all(np.abs(fitted - w_star) < 4 * se), (fitted, w_star, se)


def test_fitted_jointly_the_highest_entropy_rule_gets_a_negligible_weight(sample):
    """The noisy rules together (the noise-free one, λ = 0, would explain everything alone): weights fall with λ,
    and the maximum-entropy rule's is zero up to sampling error."""
    delta, _, _ = sample
    w = bt_fit_weights(delta[:, 1:], l2=0.0, normalise=False)  # λ = 0.25, 0.5, 0.75, 1
    assert np.all(np.diff(w) < 0), w
    assert abs(w[-1]) < 0.05 * w[0]


def test_entropy_alone_does_not_set_the_gradient(sample):
    """Squeeze the noisiest informative rule's ratings towards ½ by s = 0.1: its entropy falls below that of every
    noisy rule and its accuracy is unchanged, yet its gradient at w = 0 is s times what it was."""
    _, ratings, psi = sample
    s, k = 0.1, 3  # λ = 0.75
    squeezed = 0.5 + s * (psi[..., k] - 0.5)
    H = rating_entropy(np.column_stack([ratings, squeezed.reshape(-1)]), B)
    assert H[-1] < H[1:-1].min()
    acc = rule_accuracy(psi[:, 0], psi[:, 1])[0]
    assert rule_accuracy(squeezed[:, [0]], squeezed[:, [1]])[0][0] == acc[k]
    g = bt_grad(np.zeros(1), (squeezed[:, 0] - squeezed[:, 1])[:, None])[0]
    assert g == pytest.approx(s * bt_grad(np.zeros(1), (psi[:, 0, k] - psi[:, 1, k])[:, None])[0], rel=1e-12)
