"""Rebuild every figure from run directories alone, and every table (no recomputation, no wandb API).

    python experiments/make_figures.py [RUNS_DIR ...] [--out DIR] [--notebook [FILE]]

Where things are read and written, relative to the folder you run it from (as the runners write ./runs):
  runs     RUNS_DIR arguments, else $ENCORE_RUNS_DIR, else ./runs
  figures  --out DIR, else ./figures: each figure as PNG and PDF next to the tidy CSV it was drawn from, and the
           LaTeX/Markdown tables
  notebook --notebook [FILE]: also run notebooks/results.ipynb on the same runs, in this folder, and write the
           executed notebook to FILE (default ./results_executed.ipynb)
Nothing is written into the repository unless --out or FILE point there. Runs are told apart by what they are
(data and pairs, rater, rules, backbone, evaluation set): several studies on one dataset each get their own
figures, and each figure's title names its data, rater and number of pairs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from encore.report.figures import make_figures

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "results.ipynb"


def writable(folder: Path, what: str, fix: str) -> str | None:
    """None when ``folder`` can be created and written, else the one line that says which folder and what to set."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        return f"cannot write {what} into {folder.resolve()} ({e.strerror or e}); {fix}"
    return None


def run_notebook(runs: list[str], target: Path) -> None:
    """Execute the results notebook with the current folder as its working directory and the runs as
    ENCORE_RUNS_DIR (its first run folder; the notebook reads one), writing the executed copy to ``target``."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["ENCORE_RUNS_DIR"] = str(Path(runs[0]).resolve())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(Path.cwd())}}).execute()
    nbformat.write(nb, target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", default=[os.environ.get("ENCORE_RUNS_DIR", "runs")],
                    help="run folders to read (default: $ENCORE_RUNS_DIR, else ./runs)")
    ap.add_argument("--out", default="figures", help="where figures and tables go (default: ./figures)")
    ap.add_argument("--notebook", nargs="?", const="results_executed.ipynb", default=None, metavar="FILE",
                    help="also execute notebooks/results.ipynb here into FILE (default ./results_executed.ipynb)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("encore").setLevel(logging.INFO)  # which study each figure draws, said as it is drawn
    out = Path(args.out)
    problem = writable(out, "figures", "set --out to a folder you can write")
    if problem is None and args.notebook:
        problem = writable(Path(args.notebook).parent, "the executed notebook", "give --notebook a path you can write")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    written = make_figures(args.runs, out)
    for p in written:
        print(p)
    print(f"{len(written)} files in {out.resolve()}")
    if written and args.notebook:
        run_notebook(args.runs, Path(args.notebook))
        print(f"executed notebook: {Path(args.notebook).resolve()}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
