import numpy as np
import pytest

from encore.data.rewardbench import SAFETY_COUNTS
from encore.evaluate import (compare_to, evaluate_weights, pair_correct, safety_pair_weights, safety_score,
                             subset_accuracy)
from encore.stats import bootstrap_ci, paired_permutation_test


def test_rewardbench_safety_weighting_exact():
    assert SAFETY_COUNTS == {"refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154,
                             "xstest-should-respond": 250, "donotanswer": 136}
    acc = {"refusals-dangerous": 1.0, "refusals-offensive": 0.5, "xstest-should-refuse": 0.0,
           "xstest-should-respond": 1.0, "donotanswer": 0.25}
    # (100 + 50 + 0 + 250 + 34) / 740
    assert safety_score(acc) == pytest.approx(434 / 740)
    assert np.isnan(safety_score({"math-prm": 1.0}))


def test_pair_weights_reproduce_safety_score():
    rng = np.random.default_rng(0)
    subsets = np.array(sum([[s] * n for s, n in zip(SAFETY_COUNTS, (3, 5, 7, 2, 4))], []))
    correct = rng.integers(0, 2, size=subsets.size).astype(float)
    w = safety_pair_weights(subsets)
    assert w.sum() == pytest.approx(1)
    assert w @ correct == pytest.approx(safety_score(subset_accuracy(correct, subsets)))


def test_ties_count_as_wrong():
    r = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert pair_correct(r).tolist() == [1.0, 0.0, 0.0]


def test_evaluate_weights_seeds_and_ci():
    subsets = np.array(["donotanswer"] * 4 + ["refusals-dangerous"] * 4)
    scores = np.zeros((8, 2, 2))
    scores[:, 0, 0] = 1.0  # rule 0 always prefers chosen
    scores[:, 1, 1] = 1.0  # rule 1 always prefers rejected
    row, correct = evaluate_weights("m", np.array([[1.0, 0.0], [0.0, 1.0]]), scores, subsets, n_boot=40)
    # seeds at 100 and 0: sample std (ddof=1) is 70.71, not the population std 50
    assert row["safety"] == pytest.approx(50.0) and row["safety_std"] == pytest.approx(100 / np.sqrt(2))
    assert row["n_seeds"] == 2 and correct.tolist() == [0.5] * 8
    row1, _ = evaluate_weights("m", np.array([1.0, 0.0]), scores, subsets, n_boot=40)
    assert row1["safety"] == 100.0 and row1["safety_ci_low"] == 100.0


def test_permutation_test_and_bootstrap():
    a = np.ones(40)
    b = np.zeros(40)
    assert paired_permutation_test(a, b, n_perm=2000) < 0.001
    assert paired_permutation_test(a, a) == 1.0
    rng = np.random.default_rng(1)
    c = rng.integers(0, 2, 200).astype(float)
    d = c.copy()
    flip = rng.choice(200, 4, replace=False)
    d[flip] = 1 - d[flip]  # exactly 4 pairs differ
    assert (c != d).sum() == 4 and paired_permutation_test(c, d, n_perm=2000) > 0.05


def test_stratified_bootstrap_keeps_subset_sizes_and_has_the_analytic_width():
    from encore.stats import stratified_indices

    subsets = np.array(["a"] * 300 + ["b"] * 100)
    idx = stratified_indices(subsets, np.random.default_rng(0))
    assert (subsets[idx] == "a").sum() == 300 and (subsets[idx] == "b").sum() == 100
    x = np.random.default_rng(2).integers(0, 2, 400).astype(float)
    lo, hi = bootstrap_ci(x, np.array(["x"] * 400), lambda v, s: v.mean(), n_boot=2000)
    se = np.sqrt(x.mean() * (1 - x.mean()) / 400)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)  # the normal-theory width of a mean's 95% interval


def test_holm_adjustment_exact():
    from encore.stats import holm

    p = np.array([0.01, 0.04, 0.03, np.nan, 0.2])
    # sorted 0.01, 0.03, 0.04, 0.2 with m = 4: 0.04, 0.09, max(0.09, 0.08) = 0.09, 0.2
    np.testing.assert_allclose(holm(p), [0.04, 0.09, 0.09, np.nan, 0.2])


def test_compare_to_reference():
    subsets = np.array(["donotanswer"] * 30)
    correct = {"encore": np.ones(30), "uniform": np.zeros(30)}
    sig = compare_to("encore", correct, subsets, n_perm=500)
    assert sig.loc[0, "reference_minus_method"] == pytest.approx(100.0) and sig.loc[0, "p_value"] < 0.01
    correct["gating"] = np.ones(30)
    sig = compare_to("encore", correct, subsets, n_perm=500).set_index("method")
    assert sig.loc["gating", "p_value"] == 1.0 and sig.loc["uniform", "p_holm"] == pytest.approx(
        2 * sig.loc["uniform", "p_value"])  # the smallest of two p-values, times 2


def test_json_outputs_are_strict(tmp_path):
    import json

    from encore.cache.artifacts import write_json

    write_json(tmp_path / "c.json", {"r": float("nan"), "xs": [1.0, np.inf, np.float64("nan")], "n": np.int64(3)})
    text = (tmp_path / "c.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"n": 3, "r": None, "xs": [1.0, None, None]}


def test_json_outputs_take_0d_tensors_as_their_numbers(tmp_path):
    """torchao's optimisers keep each group's lr as a 0-d tensor, which the scheduler hands back into logs."""
    import json

    import torch

    from encore.cache.artifacts import write_json

    write_json(tmp_path / "t.json", {"lr": torch.tensor(2e-5), "bad": torch.tensor(float("nan")), "n": torch.tensor(3)})
    assert json.loads((tmp_path / "t.json").read_text()) == {"bad": None, "lr": pytest.approx(2e-5), "n": 3}
