"""Bins and ties that do not depend on floating-point accidents (encore.entropy's docstring defines them): a rating
meant as k/B lands in bin k whatever path carried it, a rating read back from a text file equals the one written,
and a value off by one unit in the last place moves no bin, no accuracy and no r."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encore import entropy
from encore.entropy import correlation, discretise, rating_entropy, rule_accuracy


def test_a_rating_exactly_on_an_edge_is_in_the_bin_that_starts_there():
    k = np.arange(11)
    assert discretise(k / 10, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]  # [k/B, (k+1)/B), the last closed
    # 0.3, 0.6, 0.7 on their edges whichever way they were computed (int(r * B) and np.histogram disagree here)
    ways = {3: [0.3, 0.1 * 3, 1 - 0.7, 3 / 10], 6: [0.6, 0.2 * 3, 1 - 0.4], 7: [0.7, 0.1 * 7, 1 - 0.3]}
    for b, values in ways.items():
        assert discretise(np.array(values), 10).tolist() == [b] * len(values), values
        assert discretise(np.array(values, np.float32).astype(float), 10).tolist() == [b] * len(values)  # float32
    assert np.histogram([0.3, 0.6, 0.7], bins=np.linspace(0, 1, 11))[0].nonzero()[0].tolist() == [2, 5, 6]
    # a label scale: 2/3 with B = 3 is the edge of bin 2; just inside the tolerance it still is, beyond it is not
    assert discretise(np.array([2 / 3, 2 / 3 - 0.5 * entropy.EDGE_TOL, 2 / 3 - 2 * entropy.EDGE_TOL]), 3).tolist() == [2, 2, 1]


@given(st.integers(2, 60), st.data())
@settings(max_examples=200, deadline=None)
def test_every_edge_and_its_neighbouring_floats_land_in_the_same_bin(bins, data):
    k = data.draw(st.integers(0, bins))
    r = k / bins
    near = [r, np.nextafter(r, 2.0), np.nextafter(r, -1.0), float(np.float32(r))]
    near = np.clip(near, 0.0, 1.0)
    assert set(discretise(near, bins).tolist()) == {min(k, bins - 1)}


def _nudge(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each value moved one unit in the last place up or down, or kept (inside [0, 1])."""
    step = rng.integers(-1, 2, size=x.shape)
    out = np.where(step > 0, np.nextafter(x, 2.0), np.where(step < 0, np.nextafter(x, -1.0), x))
    return np.clip(out, 0.0, 1.0)


@given(st.integers(2, 12), st.integers(2, 20), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_one_ulp_moves_no_bin_no_accuracy_and_no_r(scale, bins, seed):
    """Ratings on a label scale 0, 1/N, ..., 1 (ties and edges everywhere), each nudged by one ulp."""
    rng = np.random.default_rng(seed)
    c, r = rng.integers(0, scale + 1, size=(2, 40, 5)) / scale
    c2, r2 = _nudge(c, rng), _nudge(r, rng)
    assert np.array_equal(discretise(c, bins), discretise(c2, bins))
    for ties in ("wrong", "half", "drop"):
        np.testing.assert_array_equal(rule_accuracy(c, r, ties)[0], rule_accuracy(c2, r2, ties)[0])
    H, H2 = (rating_entropy(np.concatenate(x), bins) for x in ((c, r), (c2, r2)))
    np.testing.assert_array_equal(H, H2)
    a = rule_accuracy(c, r)[0]
    assert correlation(H, a) == correlation(H2, rule_accuracy(c2, r2)[0])


def test_distinct_float32_ratings_stay_distinct_and_do_not_tie():
    x = np.float32(0.5)
    c, r = np.array([[float(np.nextafter(x, np.float32(1)))]]), np.array([[float(x)]])  # one float32 ulp apart
    assert rule_accuracy(c, r)[0][0] == 1.0


# ---------------------------------------------------------------------------------------- numbers read from text
def _values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.uniform(size=n)
    v[:10] = np.arange(10) / 10  # and the edges
    return v


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_ratings_file_is_read_back_exactly_as_written(tmp_path, fmt):
    """rater=file: every value in a JSONL or CSV file (written with Python's shortest round-trip repr, as json.dumps
    and csv writers do) is the float the writer held, bit for bit."""
    from encore.data.pairs import _pair_ids
    from encore.rating.file import FileRater
    from encore.rules import Rule

    n = 400
    pairs = pd.DataFrame({"prompt": [f"p{i}" for i in range(n)], "chosen": [f"c{i}" for i in range(n)],
                          "rejected": [f"r{i}" for i in range(n)], "subset": "s"})
    pairs["pair_id"] = _pair_ids(pairs)
    v = _values(2 * n, 0)
    rows = [{"pair_id": pid, "side": side, "rule": "a", "value": float(v[2 * i + s])}
            for i, pid in enumerate(pairs["pair_id"]) for s, side in enumerate(("chosen", "rejected"))]
    path = tmp_path / f"ratings.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path.write_text("pair_id,side,rule,value\n" + "".join(f"{r['pair_id']},{r['side']},a,{r['value']!r}\n"
                                                              for r in rows))
    ratings, _ = FileRater(str(path)).given(pairs, [Rule("a", "rule a")])
    got = ratings.values[:, :, 0].reshape(-1)
    assert np.array_equal(got, v), f"{int((got != v).sum())} of {v.size} values differ from the file's"


def test_label_columns_from_jsonl_are_the_numbers_written(tmp_path, cache):
    """rater=columns (the HelpSteer2 preset) on a JSONL file whose labels are arbitrary floats on [0, 4]: ψ = x / 4
    of the very float each line holds."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from conftest import ROOT, make_cfg
    from encore.rules import load_rules

    fix = ROOT / "tests" / "fixtures"
    attrs = [json.loads(line) for line in (fix / "helpsteer2_train.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(1)
    for row in attrs:
        for col in ("helpfulness", "correctness", "coherence", "complexity", "verbosity"):
            row[col] = float(rng.uniform(0, 4))
    path = tmp_path / "attrs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in attrs))
    cfg = make_cfg("rater=helpsteer2", f"data.path={path}", f"data.preference_path={fix / 'helpsteer2_preference.jsonl'}",
                   cache=cache)
    pairs = instantiate(cfg.data)
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    ratings, _ = instantiate(cfg.rater).given(pairs, rules)
    by_text = {(row["prompt"], row["response"]): row for row in attrs}
    for i, (p, c, r) in enumerate(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])):
        for j, rule in enumerate(ratings.rules):
            assert ratings.values[i, 0, j] == by_text[(p, c)][rule] / 4
            assert ratings.values[i, 1, j] == by_text[(p, r)][rule] / 4
