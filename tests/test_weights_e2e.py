"""End to end: the ENCORE weights a run writes are softmax(-H/τ) of the entropies the same run wrote, with H in
nats whatever study.log_base reports it in (τ's unit is the nat), computed here by hand from the run's files."""

import numpy as np
import pandas as pd
import pytest

from conftest import make_cfg
from encore.pipeline import run_evaluate


def _run(tmp_path, cache, *over):
    run = tmp_path / "_".join(over).replace("=", "-").replace(".", "-")
    run_evaluate(make_cfg("method=encore", "data.limit=24", "eval.subsets=[donotanswer]", *over, cache=cache), run)
    stats, weights = pd.read_csv(run / "rule_stats.csv"), pd.read_csv(run / "weights.csv").set_index("method")
    return stats.set_index("rule")["entropy"], weights.loc["encore", stats["rule"]].to_numpy(float)


@pytest.mark.parametrize("base, tau", [("e", 2.0), ("2", 2.0), ("10", 0.5)])
def test_a_runs_encore_weights_are_softmax_of_its_own_rule_stats_in_nats(tmp_path, cache, base, tau):
    H, w = _run(tmp_path, cache, f"study.log_base={base}", f"method.tau={tau}")
    nats = H.to_numpy() * (1.0 if base == "e" else np.log(float(base)))
    z = np.exp(-nats / tau)
    np.testing.assert_allclose(w, z / z.sum(), rtol=1e-12, atol=0)


def test_tau_means_the_same_in_bits_and_nats(tmp_path, cache):
    H_e, w_e = _run(tmp_path, cache, "study.log_base=e")
    H_2, w_2 = _run(tmp_path, cache, "study.log_base=2")
    np.testing.assert_allclose(H_2.to_numpy() * np.log(2), H_e.to_numpy(), rtol=1e-12)  # the same entropies, in bits
    np.testing.assert_allclose(w_2, w_e, rtol=1e-12)
