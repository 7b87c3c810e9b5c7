"""Rebuild every figure from run directories alone (no recomputation, no wandb API).

    python experiments/make_figures.py [RUNS_DIR ...] [--out figures]

Defaults: runs under $ENCORE_RUNS_DIR (or ./runs); figures into <repo>/figures/. Each figure is written as PNG and
PDF next to the tidy CSV it was drawn from.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from encore.report.figures import make_figures

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", default=[os.environ.get("ENCORE_RUNS_DIR", "runs")])
    ap.add_argument("--out", default=str(REPO / "figures"))
    args = ap.parse_args(argv)
    written = make_figures(args.runs, Path(args.out))
    for p in written:
        print(p)
    print(f"{len(written)} files in {args.out}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
