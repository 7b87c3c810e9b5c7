"""Outputs where the user works (issue 35): make_figures.py run from the user's own folder writes ./figures there
(never <repo>/figures), --help says where outputs go, an unwritable figures folder is one line naming it and what to
set (the executed notebook's place: tests/test_notebook.py)."""

import os
import subprocess
import sys

from conftest import ROOT


def run(args, cwd, runs=None, timeout=600):
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    env.pop("ENCORE_RUNS_DIR", None)
    if runs is not None:
        env["ENCORE_RUNS_DIR"] = str(runs)
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "make_figures.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def test_help_says_where_outputs_go(tmp_path):
    out = run(["--help"], tmp_path)
    assert out.returncode == 0 and "./figures" in out.stdout and "./runs" in out.stdout
    assert "./results_executed.ipynb" in out.stdout


def test_figures_land_in_the_users_folder_not_the_repository(demo_runs, tmp_path):
    before = snapshot(ROOT / "figures")
    out = run([], tmp_path, runs=demo_runs)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "figures" / "entropy_vs_accuracy.png").exists()
    assert f"files in {tmp_path / 'figures'}" in out.stdout
    assert snapshot(ROOT / "figures") == before  # nothing written into the repository
    assert "study: Demo, 103 pairs, rater all-MiniLM-L6-v2" in out.stderr  # which study each figure draws, said


def test_an_unwritable_figures_folder_is_one_line_naming_it(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder would go")
    out = run(["--out", "taken/figures"], tmp_path, runs=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "taken" / "figures") in lines[0] and "--out" in lines[0], lines
