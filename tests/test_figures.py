"""Every figure drawn from demo outputs and a small τ sweep, checked as a reviewer would with matplotlib's own
renderer: no two texts overlap (tick labels included), no text leaves the figure, no legend or label covers a data
point; every PDF embeds TrueType, never Type 3; the LaTeX and Markdown tables are well-formed and carry the numbers
of main_table.csv."""

import re

import numpy as np
import pandas as pd
import pytest

from encore.report import collect, labels, plots, plots_results
from encore.report import figures
from encore.report.figures import make_figures
from encore.run.pipeline import run_evaluate, run_reproduce
from encore.report.style import Names
from encore.report.studies import about_result, about_study

from conftest import make_cfg
from figure_checks import (clipped_points, connectors_through_labels, covered_points, crossing_connectors,
                           cut_bands, data_points, detached_labels, labels_on_bars, negative_zeros, overlapping_texts,
                           point_labels, texts_outside, tick_values)

TAUS = (0.1, 2.0, 20.0)


PILOT = 12  # pairs of the pilot run after the study, on the same data (issue 33: it displaced the study)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cache = root / "cache"
    run_reproduce(make_cfg(cache=cache), root / "demo")
    for tau in TAUS:
        run_evaluate(make_cfg("method=tau_sweep", f"method.encore.tau={tau}", "experiment_name=tau_sweep",
                              cache=cache), root / f"tau-{tau:g}")
    run_reproduce(make_cfg(f"data.limit={PILOT}", cache=cache), root / "pilot")  # the newest run
    return root


@pytest.fixture(scope="module")
def drawn(runs):
    """Every figure of the paper, as Figure objects, from the run directories alone (the full study's)."""
    found = collect.find_runs([runs])
    study = collect.run_meta(runs / "demo")
    names = Names.from_run(runs / "demo")
    tables = collect.main_tables(found)
    full = collect.full_tables(tables)[study["result"]]
    sweep = collect.tau_sweeps(tables)[study["result"]]
    ratings = collect.ratings(found)
    ratings = ratings[ratings["study"] == study["study"]]
    about = about_result(study, "Demo")
    stats = collect.rule_stats(found)
    figs = {
        "entropy_vs_accuracy": plots.draw_entropy_vs_accuracy(
            stats, collect.correlations(found), names,
            titles={k: about_study(m, "Demo") for k, m in collect.studies(found).items()}),
        "rating_distributions": plots.draw_rating_distributions(plots.rating_histogram(ratings), names,
                                                                title=about_study(study, "Demo")),
        "main_results": plots_results.draw_main_results(full, collect.significance(runs / "demo"), names, about=about),
        "accuracy_vs_tau": plots_results.draw_tau_curve(sweep, uniform=68.0, single=74.0, zero=64.0, title=about),
        "weights": plots_results.draw_weight_heatmap(pd.read_csv(runs / "demo" / "weights_long.csv"), "method", names,
                                                     title=about),
        "encore_weights": plots_results.draw_weight_heatmap(collect.encore_weights(found, sweep), "tau", names,
                                                            title=about),
    }
    assert len(sweep) == len(TAUS) and not full.empty and stats["study"].nunique() == 2
    return figs


@pytest.mark.parametrize("name", ["entropy_vs_accuracy", "rating_distributions", "main_results", "accuracy_vs_tau",
                                  "weights", "encore_weights"])
def test_no_text_overlaps_leaves_the_figure_or_covers_a_point(drawn, name):
    fig = drawn[name]
    assert overlapping_texts(fig) == [], name
    assert texts_outside(fig) == [], name
    assert covered_points(fig) == [], name


@pytest.mark.parametrize("name", ["entropy_vs_accuracy", "rating_distributions", "main_results", "accuracy_vs_tau",
                                  "weights", "encore_weights"])
def test_no_crossing_connector_clipped_point_cut_band_or_signed_zero(drawn, name):
    """What a reviewer found in the figures of a run (issue 26): connectors of neighbouring labels crossing, error
    bars through labels, points cut at 100%, a fit band cut by the axis, "-0.00" in a heatmap."""
    fig = drawn[name]
    assert crossing_connectors(fig) == [], name
    assert connectors_through_labels(fig) == [], name
    assert labels_on_bars(fig) == [], name
    assert clipped_points(fig) == [], name
    assert cut_bands(fig) == [], name
    assert negative_zeros(fig) == [], name


def test_subset_panels_have_ticks_that_read(drawn):
    """Each subset panel shows three round ticks within 0-100% (not two: 20 and 100)."""
    for ax in drawn["main_results"].axes[1:]:
        ticks = tick_values(ax)
        assert len(ticks) == 3 and all(0 <= t <= 100 and t == round(t) for t in ticks), (ax.get_title(), ticks)


def test_every_rule_label_is_attached_to_its_own_point(drawn):
    """Each point carries one label, placed at its exact data position; a connector ends on its own point (within 3
    display pixels); a label without one is nearer its own point than any other."""
    fig = drawn["entropy_vs_accuracy"]
    assert detached_labels(fig) == []
    for ax in fig.axes:
        points = np.unique(data_points(ax).round(2), axis=0)
        assert len(point_labels(ax)) == len(points) > 0


def test_run_and_rebuilt_figures_label_the_same_way(runs, tmp_path, monkeypatch):
    """The copy a run draws (run_figures) and the one make_figures rebuilds from that run alone: the same title, the
    same label texts (names or numbers, decided by one function from the same inputs) at the same places."""
    drawn_now: dict[str, list] = {}
    save = plots.save

    def keep(fig, out, stem):
        ax = fig.axes[0]
        drawn_now.setdefault(stem, []).append((ax.get_title(), sorted(
            (a.get_text(), *np.round(a.xyann, 4)) for a in point_labels(ax))))
        return save(fig, out, stem)

    monkeypatch.setattr(plots, "save", keep)
    demo = runs / "demo"
    figures.run_figures(demo, dataset=collect.run_meta(demo)["dataset"])
    make_figures([demo], tmp_path / "rebuilt")
    (run_title, run_labels), (rebuilt_title, rebuilt_labels) = drawn_now["entropy_vs_accuracy"]
    assert run_title == rebuilt_title and run_title.startswith("Demo, 103 pairs, rater all-MiniLM-L6-v2\n$r$ = ")
    assert run_labels == rebuilt_labels and len(run_labels) == 10


def test_figures_say_what_a_paper_says(drawn):
    main = drawn["main_results"]
    labels = [t.get_text() for t in main.axes[0].get_yticklabels()]
    assert "ENCORE" in labels and "Single-head BT" in " ".join(labels) and "bt_single_head" not in " ".join(labels)
    encore = next(t for t in main.axes[0].get_yticklabels() if t.get_text() == "ENCORE")
    assert encore.get_fontweight() == "bold"  # set apart the same way in every figure
    assert len(main.axes) == 6  # Safety and its five subsets
    tau = drawn["accuracy_vs_tau"].axes[0]
    assert tau.get_xscale() == "log" and [t.get_text() for t in tau.get_xticklabels()] == ["0.1", "1", "10"]
    assert any("τ = 2" in t for t in [h.get_text() for h in drawn["accuracy_vs_tau"].legends[0].get_texts()])
    ev = drawn["entropy_vs_accuracy"].axes[0]
    assert "$r$ = " in ev.get_title() and "[" in ev.get_title()  # r with its interval, under the title


def test_every_pdf_embeds_truetype_never_type3(runs, tmp_path):
    written = make_figures([runs], tmp_path / "fig")
    pdfs = [p for p in written if p.suffix == ".pdf"] + list(runs.rglob("figures/*.pdf"))
    assert len(pdfs) >= 9  # five rebuilt figures and the demo run's four
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/Type3" not in data, pdf.name
        assert b"/TrueType" in data or b"/CIDFontType2" in data, pdf.name
    study = f"_demo-train-{collect.run_meta(runs / 'demo')['train_pairs']}pairs"
    assert all((tmp_path / "fig" / f"{n}{study}.png").exists() for n in ("main_results", "accuracy_vs_tau",
                                                                         "encore_weights"))


def _tabular_rows(tex: str) -> tuple[int, list[list[str]]]:
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    rows = [r.strip() for r in body.strip().split(r"\\") if r.strip()]
    return len(spec), [re.split(r"(?<!\\)&", r) for r in rows]


def test_main_table_tex_is_a_wellformed_booktabs_table_with_the_csv_numbers(runs):
    tex = (runs / "demo" / "main_table.tex").read_text()
    table = pd.read_csv(runs / "demo" / "main_table.csv")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\caption{" in tex
    assert "rater: embedded:all-minilm-l6-v2; backbone: tiny-random-bert" in tex.lower()  # who produced it
    assert "data: demo-train, 103 pairs" in tex and "evaluation pairs: 121" in tex  # and on how many pairs
    assert re.search(r"(?<!\\)_", tex.replace(r"\_", "")) is None  # every underscore escaped
    ncols, rows = _tabular_rows(tex)
    assert len(rows) == len(table) and all(len(r) == ncols for r in rows)  # balanced columns on every row
    subsets = [c for c in ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
                           "donotanswer") if c in table]
    for row, (_, ref) in zip(rows, table.iterrows()):
        nums = [float(re.search(r"[\d.]+", c.replace(r"\textbf{", "")).group()) for c in row[1:]]
        np.testing.assert_allclose(nums, [round(ref[c], 1) for c in [*subsets, "safety"]], atol=0.051)
        if ref["n_seeds"] > 1:
            assert r"$\pm$" in row[-1]  # mean ± std for the seeded methods
    best = table["safety"].round(1).max()
    assert any(r"\textbf{" + f"{best:.1f}" in r[-1] for r in rows)  # best per column in bold
    md = (runs / "demo" / "main_table.md").read_text()
    assert md.count("\n|") >= len(table) + 1 and "**" in md
    stats = (runs / "demo" / "rule_stats.tex").read_text()
    assert r"\caption{Rule statistics: Demo, 103 pairs, rater all-MiniLM-L6-v2.}" in stats
    ncols, rows = _tabular_rows(stats)
    assert len(rows) == 10 and all(len(r) == ncols for r in rows) and "[" in rows[0][2]  # accuracy with its CI


def test_coarse_labels_share_points_and_get_numbers_with_a_key():
    """19 rules on a handful of points (binary labels): points carry numbers, a key below names every rule, and
    the checks above still hold."""
    rules = [f"no_harm_{i}" for i in range(19)]
    ent = np.repeat([0.0, 0.08, 0.14, 0.19, 0.23, 0.27], [1, 2, 3, 4, 4, 5])
    acc = np.array([0.0, .03, .03, .06, .06, .06, .09, .09, .12, .12, .09, .12, .06, .16, .12, .09, .03, .16, .12])
    stats = pd.DataFrame({"rule": rules, "entropy": ent, "accuracy": acc, "accuracy_ci_low": acc * 0.5,
                          "accuracy_ci_high": acc + 0.1, "dataset": "pku-saferlhf"})
    fig = plots.draw_entropy_vs_accuracy(stats, None, Names.from_config())
    texts = [t.get_text() for t in fig.axes[0].texts]
    key = "\n".join(t for t in texts if "\n" in t)
    assert all(f"{i + 1}  No harm {i}" in key for i in range(19))
    assert "4,5,6" in texts  # rules 4-6 share (0.14, 6%)
    assert overlapping_texts(fig) == [] and texts_outside(fig) == [] and covered_points(fig) == []


def test_names_that_cannot_be_placed_fall_back_to_numbers_and_a_key(monkeypatch):
    """When named labels find no clean place, the figure switches to numbers and a key rather than ship
    overlapping names."""
    place, calls = labels.place, []

    def first_fails(fig, ax, texts, *args, **kwargs):
        calls.append(texts)
        return None if len(calls) == 1 else place(fig, ax, texts, *args, **kwargs)

    monkeypatch.setattr(labels, "place", first_fails)
    stats = pd.DataFrame({"rule": ["no_violence", "no_hate", "no_fraud"], "entropy": [0.5, 0.9, 1.3],
                          "accuracy": [0.7, 0.6, 0.5]})
    fig = plots.draw_entropy_vs_accuracy(stats, None, Names.from_config())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert calls == [["No violence", "No hate", "No fraud"], ["1", "2", "3"]] and {"1", "2", "3"} <= set(texts)
    assert any("1  No violence" in t and "2  No hate" in t for t in texts) and "No violence" not in texts
    assert overlapping_texts(fig) == [] and texts_outside(fig) == []


def test_undefined_correlation_from_json_draws_the_points_without_an_r():
    """Rules with equal entropies have no Pearson r; correlation.json stores it as null, which comes back as None."""
    stats = pd.DataFrame({"rule": ["no_violence", "no_hate"], "entropy": [0.68, 0.68], "accuracy": [0.6, 0.7],
                          "dataset": ""})
    corr = pd.DataFrame([{"dataset": "", "pearson_r": None, "pearson_p": None}])
    fig = plots.draw_entropy_vs_accuracy(stats, corr, Names.from_config())
    assert not any("$r$" in t.get_text() for t in fig.axes[0].texts) and "$r$" not in fig.axes[0].get_title()
