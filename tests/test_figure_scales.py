"""What a reviewer reads off the results figures: each subset panel on one shared range with its own intervals and
an axis label, the single rule named, a weights scale that a one-hot column does not flatten, histograms with a y
label."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from encore.report import plots, plots_results
from encore.evaluate import evaluate_rewards

SUBSETS = np.array(["donotanswer"] * 30 + ["xstest-should-respond"] * 30)


def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for name in ("encore", "uniform", "single_rule"):
        rewards = rng.normal(size=(1, len(SUBSETS), 2)) + np.array([0.4, 0.0])
        row, _ = evaluate_rewards(name, rewards, SUBSETS, n_boot=50)
        rows.append({**row, **({"rule": "no_hate"} if name == "single_rule" else {})})
    return pd.DataFrame(rows)


def test_each_subset_carries_its_own_interval():
    t = table()
    for s in ("donotanswer", "xstest-should-respond"):
        assert (t[f"{s}_ci_low"] <= t[s]).all() and (t[s] <= t[f"{s}_ci_high"]).all()
        assert (t[f"{s}_ci_high"] > t[f"{s}_ci_low"]).all()


def test_subset_panels_share_a_range_carry_intervals_and_label_their_axis():
    fig = plots_results.draw_main_results(table())
    main, *panels = fig.axes
    assert len({a.get_xlim() for a in panels}) == 1
    assert all(a.get_xlabel() == "accuracy (%)" for a in panels)
    assert all(any(len(c.get_segments()) for c in a.collections) for a in panels)  # the error bars
    assert "Single rule (No hate)" in [t.get_text() for t in main.get_yticklabels()]
    plt.close(fig)


def test_a_one_hot_column_does_not_set_the_weight_scale():
    rules = [f"r{k}" for k in range(4)]
    w = {"encore": [0.3, 0.3, 0.2, 0.2], "uniform": [0.25] * 4, "single_rule": [1.0, 0, 0, 0]}
    long = pd.DataFrame([{"method": m, "rule": r, "weight": x} for m, ws in w.items() for r, x in zip(rules, ws)])
    fig = plots_results.draw_weight_heatmap(long, "method")
    im = fig.axes[0].collections[0]  # the heatmap's mesh
    assert im.norm.vmax == 0.3  # the largest weight outside the one-hot column: ENCORE and uniform stay apart
    assert {t.get_text() for t in fig.axes[0].texts} >= {"0.30", "0.25", "1.00"}
    plt.close(fig)


def test_rating_histograms_label_both_axes():
    ratings = pd.DataFrame({"rule": ["a"] * 4, "side": ["chosen", "rejected"] * 2, "value": [0.1, 0.5, 0.9, 0.2]})
    fig = plots.draw_rating_distributions(plots.rating_histogram(ratings))
    assert fig.get_supylabel() == "responses (count)" and fig.get_supxlabel() == "rating ψ"
    plt.close(fig)
