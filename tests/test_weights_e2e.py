"""End to end: the ENCORE weights a run writes are softmax(-H/τ) of the entropies the same run wrote, with H in
nats whatever study.log_base reports it in (τ's unit is the nat), computed here by hand from the run's files."""

import numpy as np
import pandas as pd
import pytest

from conftest import make_cfg
from encore.run.pipeline import run_evaluate


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One cache for the module: the 24 pairs are rated and embedded once."""
    return tmp_path_factory.mktemp("cache")


UNITS = {"e": "nats", "2": "bits", "10": "hartleys"}


def _run(tmp_path, cache, *over):
    run = tmp_path / "_".join(over).replace("=", "-").replace(".", "-")
    run_evaluate(make_cfg("method=encore", "data.limit=24", "eval.subsets=[donotanswer]", *over, cache=cache), run)
    stats, weights = pd.read_csv(run / "rule_stats.csv"), pd.read_csv(run / "weights.csv").set_index("method")
    base = next((o.split("=")[1] for o in over if o.startswith("study.log_base=")), "e")
    assert set(stats["entropy_unit"]) == {UNITS[base]}  # what the figure's axis and rule_stats.tex name
    return stats.set_index("rule")["entropy"], weights.loc["encore", stats["rule"]].to_numpy(float)


@pytest.mark.parametrize("base, tau", [("e", 2.0), ("2", 2.0), ("10", 0.5)])
def test_a_runs_encore_weights_are_softmax_of_its_own_rule_stats_in_nats(tmp_path, shared, base, tau):
    H, w = _run(tmp_path, shared, f"study.log_base={base}", f"method.tau={tau}")
    nats = H.to_numpy() * (1.0 if base == "e" else np.log(float(base)))
    z = np.exp(-nats / tau)
    np.testing.assert_allclose(w, z / z.sum(), rtol=1e-12, atol=0)


def test_tau_means_the_same_in_bits_and_nats(tmp_path, shared):
    H_e, w_e = _run(tmp_path, shared, "study.log_base=e")
    H_2, w_2 = _run(tmp_path, shared, "study.log_base=2")
    np.testing.assert_allclose(H_2.to_numpy() * np.log(2), H_e.to_numpy(), rtol=1e-12)  # the same entropies, in bits
    np.testing.assert_allclose(w_2, w_e, rtol=1e-12)


SAFETY_N = {"refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 154,
            "xstest-should-respond": 250, "donotanswer": 136}  # RewardBench's example counts, typed out


def test_every_weight_based_row_is_its_weights_applied_to_the_runs_head_scores(tmp_path, shared):
    """main_table.csv's Safety, recomputed by hand from the same run's head_scores.parquet and weights_long.csv: per
    seed φ = Σ_k w_k ψ_k, a pair correct when φ(chosen) > φ(rejected), per-subset accuracy averaged over seeds, then
    RewardBench's example-weighted mean."""
    run = tmp_path / "run"
    run_evaluate(make_cfg("data.limit=24", "~method.gating", "~method.bt_single_head",
                          "eval.subsets=[donotanswer,xstest-should-respond]", cache=shared), run)
    scores = pd.read_parquet(run / "head_scores.parquet")
    wide = scores.pivot_table(index=["pair_id", "subset", "side"], columns="rule", values="score", sort=False)
    weights = pd.read_csv(run / "weights_long.csv")
    table = pd.read_csv(run / "main_table.csv").set_index("method")
    checked = 0
    for method, w in weights.groupby("method", sort=False):
        acc = {}
        for _, ws in w.groupby("seed"):
            phi = wide[ws["rule"].tolist()].to_numpy() @ ws["weight"].to_numpy()
            frame = pd.Series(phi, index=wide.index).unstack("side")
            correct = (frame["chosen"] > frame["rejected"]).groupby(level="subset").mean()
            for s, a in correct.items():
                acc.setdefault(s, []).append(a)
        present = [s for s in SAFETY_N if s in acc]
        safety = sum(np.mean(acc[s]) * SAFETY_N[s] for s in present) / sum(SAFETY_N[s] for s in present)
        assert table.loc[method, "safety"] == pytest.approx(100 * safety, abs=1e-9), method
        checked += 1
    assert checked == 6  # encore, uniform, random, single_rule, single_rule_random, bt_optimized
