import numpy as np
import pytest

from encore.data.demo import load_demo
from encore.entropy import rating_entropy
from encore.rating.engine import rate_pairs
from encore.rules import Rule

from conftest import FakeRater

RULES = [Rule("a", "rule a"), Rule("b", "rule b"), Rule("c", "rule c")]


def test_killed_run_resumes_to_identical_table(tmp_path):
    pairs = load_demo("train")
    full, rep_full = rate_pairs(pairs, RULES, FakeRater(), tmp_path / "uninterrupted", chunk_size=16, progress=False)
    n_texts = len({(p, x) for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]) for x in (c, r)})
    assert rep_full["n_new"] == n_texts * 3 and rep_full["n_cached"] == 0
    with pytest.raises(KeyboardInterrupt):
        rate_pairs(pairs, RULES, FakeRater(fail_after=3), tmp_path / "killed", chunk_size=16, progress=False)
    resumed, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path / "killed", chunk_size=16, progress=False)
    assert rep["n_cached"] == 3 * 16 * 3  # three chunks survived the kill
    np.testing.assert_array_equal(resumed.values, full.values)
    again, rep2 = rate_pairs(pairs, RULES, FakeRater(fail_after=0), tmp_path / "killed", progress=False)
    assert rep2["n_new"] == 0  # fully cached: the rater is never called
    np.testing.assert_array_equal(again.values, full.values)


def test_changing_one_rule_rerates_only_that_rule(tmp_path):
    pairs = load_demo("train").iloc[:10]
    rate_pairs(pairs, RULES, FakeRater(), tmp_path, progress=False)
    _, rep = rate_pairs(pairs, [RULES[0], RULES[1], Rule("c", "a reworded rule c")], FakeRater(), tmp_path, progress=False)
    n_texts = len(set(pairs["chosen"]) | set(pairs["rejected"]))
    assert rep["n_cached"] == n_texts * 2
    # the pending responses are asked again for all rules (one call per chunk), but only rule c's ratings are new:
    # cached + new = the ratings of the run (issue 33; before, the re-asked cached ones were counted twice)
    assert rep["n_new"] == n_texts


def test_missing_ratings_are_recorded_with_reason_not_numbers(tmp_path):
    pairs = load_demo("train").iloc[:20]
    word = pairs.loc[0, "chosen"].split()[0]
    r, rep = rate_pairs(pairs, RULES, FakeRater(missing=word), tmp_path, progress=False)
    assert r.n_missing > 0 and rep["n_missing"] == r.n_missing
    assert rep["missing_by_reason"] == {"refused": r.n_missing}
    assert np.isnan(r.values[0, 0]).all()
    tidy = r.tidy()
    assert (tidy.loc[tidy["value"].isna(), "reason"] == "refused").all()


def test_constant_rule_has_zero_entropy(tmp_path):
    pairs = load_demo("train").iloc[:20]
    r, _ = rate_pairs(pairs, RULES, FakeRater(constant_rule=1), tmp_path, progress=False)
    H = rating_entropy(r.values.reshape(-1, 3))
    assert H[1] == 0.0 and H[0] > 0


def test_rater_out_of_range_is_an_error(tmp_path):
    class Bad(FakeRater):
        def rate(self, prompts, responses, rules):
            return np.full((len(responses), len(rules)), 1.5), [[""] * len(rules)] * len(responses)

    with pytest.raises(RuntimeError, match=r"outside \[0, 1\]"):
        rate_pairs(load_demo("train").iloc[:3], RULES, Bad(), tmp_path, progress=False)
