"""The results notebook, run by the command docs/experiments.md gives (`make_figures.py --notebook` from the user's
own folder), leaves there a notebook holding every figure and table make_figures draws from the runs, so it cannot
rot; it lists a sweep's jobs as one sweep, names each study, and nothing lands in <repo>/notebooks."""

import os
import subprocess
import sys

import nbformat
import pytest

from conftest import DEMO_TAUS, ROOT

FIGURES = {"entropy_vs_accuracy", "rating_distributions_demo-train", "main_results", "accuracy_vs_tau",
           "encore_weights"}  # every PNG make_figures writes for a full run and a τ sweep


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_the_documented_command_leaves_a_notebook_with_every_table_and_figure(demo_runs, tmp_path):
    (tmp_path / "runs").symlink_to(demo_runs)  # the user's folder, with its ./runs as the runners write it
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    env.pop("ENCORE_RUNS_DIR", None)
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "notebooks").rglob("*")}
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "make_figures.py"), "--notebook"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "notebooks").rglob("*")} == before
    nb = nbformat.read(tmp_path / "results_executed.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") for o in outputs)
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    markdown = "\n".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert f"{1 + len(DEMO_TAUS)} run directories" in text and "no τ sweep" not in text
    assert "1 studies: Demo, 103 pairs, rater all-MiniLM-L6-v2" in text  # each study by what it is
    assert "1 single-run groups; 1 τ sweep(s): tau_sweep (3 jobs, τ = 0.1, 2, 20)" in text  # the sweep is one row
    assert ("evaluated on demo (RewardBench layout), 121 pairs; trained on Demo, 103 pairs, rater all-MiniLM-L6-v2; "
            "backbone tiny-random-bert (headline: Safety") in text
    assert "Safety accuracy (%) on demo (RewardBench layout)" in markdown  # main_table.md, as a paper shows it
    assert html.count("<table") == 7  # runs, correlation, rule stats, main table, significance, weights, τ sweep
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert images == len(FIGURES) and "rating_distributions_demo-train" in text  # each figure once
    assert f"{len(FIGURES)} figures shown" in text and r"\begin{table*}" in text  # and the LaTeX tables
