"""The results notebook runs top to bottom on real demo outputs (a full run and a small τ sweep), so it cannot rot,
and lists the sweep's jobs as one sweep."""

import nbformat
from nbclient import NotebookClient

from encore.pipeline import run_evaluate, run_reproduce

from conftest import ROOT, make_cfg


def test_results_notebook_executes_on_demo_runs(tmp_path, cache, monkeypatch):
    runs = tmp_path / "runs"
    run_reproduce(make_cfg(cache=cache), runs / "demo" / "full")
    for tau in (0.5, 4.0):
        run_evaluate(make_cfg("method=encore", f"method.tau={tau}", cache=cache), runs / "demo" / f"tau-{tau}")
    monkeypatch.setenv("ENCORE_RUNS_DIR", str(runs))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "3 run directories" in text and "no τ sweep" not in text
    assert "1 single-run groups; 1 τ sweep(s): " in text and "(2 jobs, τ = 0.5, 4)" in text  # the sweep is one row
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert images >= 3  # entropy vs accuracy, main results, accuracy vs τ
