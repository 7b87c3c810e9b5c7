"""Writers that share a folder: every atomic write takes a unique temporary name and is never renamed afterwards,
so two ``make_figures.py`` into one folder (or two sweeps drawing at once) both finish, and leave no temporary file.
Before: a fixed ``.entropy_vs_accuracy.pdf.tmp`` and a ``rule_stats.tex`` renamed after writing made one of them die
with FileNotFoundError."""

import json
import multiprocessing as mp
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

WRITERS, ROUNDS = 4, 2


def a_run(root: Path) -> Path:
    """A study run directory as the pipeline leaves one (metrics.json, rule_stats.csv, correlation.json)."""
    run = root / "runs" / "study" / "1"
    run.mkdir(parents=True)
    acc = np.linspace(0.5, 0.7, 5)
    pd.DataFrame({"rule": [f"rule_{i}" for i in range(5)], "entropy": np.linspace(1.0, 2.0, 5), "accuracy": acc,
                  "accuracy_ci_low": acc - 0.05, "accuracy_ci_high": acc + 0.05, "n_pairs": 50}
                 ).to_csv(run / "rule_stats.csv", index=False)
    (run / "correlation.json").write_text(json.dumps({"pearson_r": 0.9, "pearson_r_ci_low": 0.5,
                                                      "pearson_r_ci_high": 1.0, "pearson_p": 0.04}))
    (run / "metrics.json").write_text(json.dumps({"job": "correlation", "experiment": "study", "dataset": "mine"}))
    return run


def at_once(work, *args) -> None:
    """``work(*args)`` in WRITERS processes released together by a barrier; every one must finish cleanly."""
    ctx = mp.get_context("fork")
    start, errors = ctx.Barrier(WRITERS), ctx.Queue()

    def worker() -> None:
        start.wait()
        try:
            work(*args)
        except BaseException:
            errors.put(traceback.format_exc())

    procs = [ctx.Process(target=worker) for _ in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    found = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert found == [] and all(p.exitcode == 0 for p in procs), "\n".join(found)


def _draw(run: Path, out: Path) -> None:
    from encore.report.figures import make_figures

    for _ in range(ROUNDS):
        make_figures([run], out)


def test_concurrent_make_figures_into_one_folder_all_finish(tmp_path):
    run, out = a_run(tmp_path), tmp_path / "figures"
    at_once(_draw, run, out)
    assert {p.name for p in out.iterdir()} == {"entropy_vs_accuracy.csv", "entropy_vs_accuracy.pdf",
                                              "entropy_vs_accuracy.png", "correlations.csv", "rule_stats_mine.tex"}
    assert (out / "entropy_vs_accuracy.pdf").read_bytes().startswith(b"%PDF")


def _fill(path: Path) -> None:
    from encore.cache.artifacts import atomic_dir, write_json

    for i in range(ROUNDS * 5):
        with atomic_dir(path) as tmp:
            tmp.mkdir()
            (tmp / "weights.bin").write_bytes(b"x" * 4096)
            write_json(tmp / "meta.json", {"round": i})


def test_concurrent_writers_of_one_directory_all_finish(tmp_path):
    """Processes saving the same model directory at once (two jobs that trained the same key): each succeeds,
    and what is left is one whole copy and no temporary or set-aside directory."""
    at_once(_fill, tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["meta.json", "weights.bin"]
