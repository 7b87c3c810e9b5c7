"""Every figure make_figures draws, of the demo and of an own-data run, checked as the reviewer of issue 35 read
them (:func:`figure_checks.reviewer_flaws`): titles that name the data, the rater and the number of pairs; no name
broken at a hyphen; fit lines within 0-100% and their band keyed; "Safety" only on RewardBench's Safety; whole-number
ticks on counts; every colour keyed; one connector per label, none across a marker or an error bar. Then each check
shown to fail on a figure with the flaw, so none of them passes by construction."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from encore.report import plots, plots_results
from encore.report.figures import make_figures
from encore.run.pipeline import run_reproduce

from conftest import make_cfg
from figure_review_checks import (broken_names, connectors_across_bars, connectors_over_markers, fit_lines_off_scale,
                           fractional_count_ticks, reviewer_flaws, safety_words, shared_connectors, stacked_labels,
                           unexplained_bands, unkeyed_colours, untitled)
from test_own_data import own_folder


def review(monkeypatch, roots, out, *must, rewardbench=True) -> dict[str, dict]:
    """make_figures on ``roots``, each figure checked just before it is saved: {file stem: flaws found}."""
    found, save = {}, plots.save

    def checked(fig, folder, stem):
        found[stem] = reviewer_flaws(fig, *must, rewardbench=rewardbench)
        return save(fig, folder, stem)

    monkeypatch.setattr(plots, "save", checked)
    monkeypatch.setattr(plots_results, "save", checked)
    make_figures(roots, out)
    return found


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_every_demo_figure_passes_the_review(demo_runs, tmp_path, monkeypatch):
    found = review(monkeypatch, [demo_runs], tmp_path, "Demo", "103 pairs", "rater all-MiniLM-L6-v2")
    assert {"entropy_vs_accuracy", "rating_distributions_demo-train", "main_results", "accuracy_vs_tau",
            "encore_weights"} <= set(found)
    assert {k: v for k, v in found.items() if v} == {}


def test_labels_cross_an_error_bar_only_where_no_placement_avoids_it(demo_runs, monkeypatch):
    """The demo's 103-pair panel on the fast stack has three points within 5 px, closer than their bars are wide:
    the placer tries names and numbers without a connector across a bar first, and only then allows one, marking
    the panel (what the check above leaves out) and saying so in the log. Forbidding crossings altogether, the
    strict stage fails here: the mark is not a way around the check."""
    from encore.report import collect, labels

    runs = collect.find_runs([demo_runs])
    stages = []
    place = labels.place
    monkeypatch.setattr(labels, "place", lambda *a, **k: stages.append((k["strict"], k["across"])) or place(*a, **k))
    fig = plots.draw_entropy_vs_accuracy(collect.rule_stats(runs), collect.correlations(runs))
    crossing = getattr(fig.axes[0], "crossing_unavoidable", False)
    assert stages[0] == (True, False)  # the first try never allows a crossing
    assert crossing == (stages[-1][1] and (True, False) in stages[:-1])
    plt.close(fig)


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_every_figure_of_an_own_data_run_passes_the_review(tmp_path, cache, monkeypatch):
    """Own pairs, ratings file and evaluation set (no RewardBench subsets: a plain accuracy, never "Safety")."""
    mine = own_folder(tmp_path / "mine")
    run_reproduce(make_cfg(f"hydra.searchpath=[file://{mine}]", "rules=mine", "data=local",
                           f"data.path={mine}/pairs.jsonl", "rater=file", f"rater.path={mine}/ratings.csv",
                           "eval=local", f"eval.path={mine}/held_out.csv", cache=cache), tmp_path / "runs" / "run")
    found = review(monkeypatch, [tmp_path / "runs"], tmp_path / "fig", "pairs", "24 pairs",
                   "rater ratings file ratings.csv", rewardbench=False)
    assert {"entropy_vs_accuracy", "main_results"} <= set(found)
    assert {k: v for k, v in found.items() if v} == {}


# Each check fails on a figure with its flaw.

def test_the_title_check_names_what_is_missing():
    fig, ax = plt.subplots()
    ax.set_title("pairs")
    fig.suptitle("Demo, 6 pairs")
    assert untitled(fig, "Demo", "6 pairs", "rater x") == ["rater x"]
    plt.close(fig)


def test_a_name_broken_at_a_hyphen_is_found():
    fig, ax = plt.subplots()
    ax.set_title("backbone all-\nMiniLM-L6-v2")
    assert broken_names(fig) == ["backbone all-\nMiniLM-L6-v2"]
    ax.set_title(plots.wrap("backbone all-MiniLM-L6-v2", 14))  # the project's wrap breaks at spaces only
    assert broken_names(fig) == [] and ax.get_title() == "backbone\nall-MiniLM-L6-v2"
    plt.close(fig)


def test_a_fit_above_100_percent_and_an_unkeyed_band_are_found():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [90, 104], ls="--")
    ax.fill_between([0, 1], [80, 90], [95, 100])
    ax.set_ylabel("Rule accuracy (%)")
    assert fit_lines_off_scale(fig) and unexplained_bands(fig) == [""]
    fig.legend([plt.Rectangle((0, 0), 1, 1)], ["its 95% bootstrap band"])
    assert unexplained_bands(fig) == []
    plt.close(fig)


def test_the_fit_line_is_cut_at_100_percent():
    """Points near 100%: the least-squares line of the entropy figure ends where accuracy does."""
    stats = pd.DataFrame({"rule": ["a", "b", "c", "d"], "entropy": [0.1, 0.5, 0.9, 1.3],
                          "accuracy": [0.99, 0.97, 0.6, 0.5], "dataset": "x"})
    fig = plots.draw_entropy_vs_accuracy(stats.assign(accuracy=[0.5, 0.6, 0.97, 1.0]), None)
    fit = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "--"]
    assert fit and max(fit[0].get_ydata()) <= 100 + 1e-9 and fit_lines_off_scale(fig) == []
    assert all(t <= 100 for t in fig.axes[0].get_yticks() if fig.axes[0].get_ylim()[0] <= t <= fig.axes[0].get_ylim()[1])
    plt.close(fig)


def test_safety_on_a_plain_accuracy_is_found():
    sweep = pd.DataFrame({"tau": [0.5, 2.0, 8.0], "safety": [60.0, 62.0, 61.0]})
    fig = plots_results.draw_tau_curve(sweep, metric="Safety")
    assert safety_words(fig) == ["Safety (%)"]
    fig = plots_results.draw_tau_curve(sweep, metric="Accuracy")
    assert safety_words(fig) == [] and fig.axes[0].get_ylabel() == "Accuracy (%)"
    plt.close("all")


def test_fractional_ticks_on_a_count_axis_are_found_and_histograms_have_none():
    fig, ax = plt.subplots()
    ax.bar([0, 1], [3, 7])
    ax.set_yticks([0, 2.5, 5, 7.5])
    ax.set_ylabel("responses (count)")
    assert fractional_count_ticks(fig) == ["'': 2.5", "'': 7.5"]
    plt.close(fig)
    hist = pd.DataFrame({"rule": "a", "side": ["chosen", "rejected"] * 5, "value": np.linspace(0, 1, 10)})
    fig = plots.draw_rating_distributions(plots.rating_histogram(hist))
    assert fractional_count_ticks(fig) == [] and "count" in fig.get_supylabel()
    plt.close(fig)


def test_a_single_rule_column_outside_the_colour_scale_is_keyed():
    w = pd.DataFrame([{"method": m, "rule": r, "weight": x} for m, ws in
                      (("encore", [0.5, 0.3, 0.2]), ("single_rule", [0.0, 1.0, 0.0])) for r, x in zip("abc", ws)])
    fig = plots_results.draw_weight_heatmap(w, "method")
    assert unkeyed_colours(fig) == []
    assert any("outside the colour scale" in t.get_text() for lg in fig.legends for t in lg.get_texts())
    fig.legends.clear()
    assert unkeyed_colours(fig) == ["heatmap"]  # the grey column without its key
    plt.close(fig)


def _labelled(points, label_at, bars=None):
    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    x, y = np.array(points, float).T
    ax.errorbar(x, y, yerr=bars, fmt="o", ms=3.5)
    ax.set_xlim(0, 10), ax.set_ylim(0, 10)
    for i, (t, xy) in enumerate(label_at):
        ax.annotate(str(t), xy=points[i], xytext=xy, fontsize=8, arrowprops=dict(arrowstyle="-"))
    return fig


def test_connectors_sharing_a_point_stacked_labels_over_a_marker_or_across_a_bar_are_found():
    fig = _labelled([(2, 2), (2, 2.0001)], [("a", (5, 5)), ("b", (5, 6))])
    assert shared_connectors(fig) == [("a", "b")]
    fig = _labelled([(2, 2), (8, 2)], [("No hate", (4, 5)), ("No violence", (4, 4.6))])
    assert stacked_labels(fig) == [("No hate", "No violence")]
    fig = _labelled([(2, 2), (5, 5)], [("a", (8, 8)), ("b", (6, 1))])
    assert connectors_over_markers(fig) == ["a"]  # a's line runs over b's point at (5, 5)
    fig = _labelled([(2, 5), (5, 5)], [("a", (8, 5.2)), ("b", (5, 8))], bars=[[0.5, 3], [0.5, 3]])
    assert connectors_across_bars(fig) == ["a"]  # a's line crosses b's bar, not its own
    plt.close("all")


@pytest.mark.parametrize("count", [3, 12])
def test_a_long_rule_name_wraps_in_the_key_and_stays_in_the_figure(count):
    """Numbers and a key (12 rules), or names (3): a 90-character rule name neither leaves the figure nor runs into
    the other column of the key."""
    rng = np.random.default_rng(1)
    rules = ["the_response_never_gives_detailed_operational_instructions_for_building_any_kind_of_weapon"] + [
        f"rule_{i}" for i in range(count - 1)]
    acc = rng.uniform(0.5, 0.7, count)
    stats = pd.DataFrame({"rule": rules, "entropy": rng.uniform(1.5, 2.3, count), "accuracy": acc,
                          "accuracy_ci_low": acc - 0.05, "accuracy_ci_high": acc + 0.05, "dataset": "x"})
    fig = plots.draw_entropy_vs_accuracy(stats, None)
    flaws = reviewer_flaws(fig)
    assert flaws == {}, flaws
    key = [t.get_text() for t in fig.axes[0].texts if "operational" in t.get_text()]
    if key and key[0].startswith("1  "):  # the key: the long entry on several lines
        assert "instructions" in key[0] and key[0].split("\n")[0] != key[0]
    plt.close(fig)
