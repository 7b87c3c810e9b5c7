"""The paper's figures, rebuilt from run directories: each PNG/PDF is written next to the tidy CSV it is drawn from."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from encore.report import collect, plots, plots_results
from encore.cache.artifacts import read_json, write_frame
from encore.report.style import Names
from encore.report.tables import write_tables

log = logging.getLogger(__name__)


def study_frames(run_dir: Path, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One run's rule stats and correlation as :func:`collect.rule_stats` and :func:`collect.correlations` give them
    (a ``dataset`` column naming the panel), so the per-run figure is drawn from the inputs the rebuilt one gets
    and :func:`plots.draw_entropy_vs_accuracy` picks the same labels (names or numbers) for both."""
    stats = pd.read_csv(run_dir / "rule_stats.csv").assign(dataset=dataset)
    p = run_dir / "correlation.json"
    return stats, pd.DataFrame([{"dataset": dataset, **read_json(p)}]) if p.exists() else None


def results_title(setup: dict | None) -> str:
    """The main results' title: the evaluation set by its own name (``setup["eval"]``, :mod:`encore.data.names`) and
    the backbone that scored it, a hub id or path shown by its last part."""
    s = setup or {}
    backbone = re.split(r"[/:]", str(s.get("backbone") or ""))[-1]
    return f"{s.get('eval') or 'RewardBench'}" + (f", backbone {backbone}" if backbone else "")


def run_figures(run_dir: Path, tracker: Any = None, dataset: str = "", setup: dict | None = None) -> list[Path]:
    """Per-run figures, from the run's own CSVs, with the display names the run recorded; ``dataset``: the run's
    training set (``metrics.json``'s ``dataset``), the title of the entropy panel as in the rebuilt figure;
    ``setup``: the run's setup (``metrics.json``'s), whose evaluation set and backbone title the main results."""
    out, names = run_dir / "figures", Names.from_run(run_dir)
    paths: list[Path] = []
    if (run_dir / "rule_stats.csv").exists():
        stats, corr = study_frames(run_dir, dataset)
        paths += plots.entropy_vs_accuracy(stats, out, corr, names)
    if (run_dir / "ratings.parquet").exists():
        hist = plots.rating_histogram(pd.read_parquet(run_dir / "ratings.parquet"))
        paths += plots.rating_distributions(hist, out, names)
    weights = pd.read_csv(run_dir / "weights_long.csv") if (run_dir / "weights_long.csv").exists() else None
    if weights is not None and len(weights):  # empty when only a judge ran
        paths += plots_results.weight_heatmap(weights, out, "method", names)
    if (run_dir / "main_table.csv").exists():
        paths += plots_results.main_results(pd.read_csv(run_dir / "main_table.csv"), out,
                                            collect.significance(run_dir), names, title=results_title(setup))
    if tracker is not None:
        for p in paths:
            if p.suffix == ".png":
                tracker.log_image(f"figures/{p.stem}", p)
    return paths


def make_figures(roots: list[str | Path], out: Path) -> list[Path]:
    """Every figure and table from run directories alone, each written next to the tidy CSV it is drawn from."""
    runs = collect.find_runs(roots)
    if not runs:
        log.error("no run directories (with metrics.json) under %s", roots)
        return []
    names = Names.from_run(runs[-1])
    written: list[Path] = []

    def emit(name: str, df: pd.DataFrame, draw) -> None:
        if df.empty:
            log.info("skipping %s: no run has the data", name)
            return
        written.append(write_frame(out / f"{name}.csv", df))
        written.extend(draw(df))

    stats, corr = collect.rule_stats(runs), collect.correlations(runs)
    emit("entropy_vs_accuracy", stats, lambda d: plots.entropy_vs_accuracy(d, out, corr, names))
    emit("correlations", corr, lambda d: [])
    for dataset in (pd.unique(stats["dataset"]) if not stats.empty else []):
        written += write_tables(out, names, stats=stats[stats["dataset"] == dataset],
                                stats_name=f"rule_stats_{_slug(dataset)}.tex")
    ratings = collect.ratings(runs)
    for dataset in (pd.unique(ratings["dataset"]) if not ratings.empty else []):
        hist = plots.rating_histogram(ratings[ratings["dataset"] == dataset])
        stem = f"rating_distributions_{_slug(dataset)}"
        emit(stem, hist, lambda d, stem=stem: plots.rating_distributions(d, out, names, stem=stem))
    tables = collect.main_tables(runs)
    full = collect.latest_full_table(tables)
    if not full.empty:
        run = Path(full["run"].iloc[0])
        title = results_title(collect.run_meta(run).get("setup"))
        emit("main_results", full, lambda d: plots_results.main_results(d, out, collect.significance(run), names,
                                                                        title=title))
        written += write_tables(out, names, table=full, setup=collect.run_meta(run).get("setup"))
    sweep = collect.tau_sweep(tables)
    # Reference lines from the sweep's own jobs (experiment=tau_sweep evaluates the limits in each), else the main table.
    own = tables[tables["run"].isin(sweep["run"])] if not sweep.empty else pd.DataFrame()
    ref = full[full["eval_fingerprint"] == sweep["eval_fingerprint"].iloc[0]] if not sweep.empty and not full.empty else full
    uniform = _first(_value(own, "tau_to_inf"), _value(ref, "uniform"))
    single, single_rule = _first_ref(_reference(own, "single_rule"), _reference(ref, "single_rule"))
    zero, zero_rule = _reference(own, "tau_to_zero") or (None, None)
    emit("accuracy_vs_tau", sweep, lambda d: plots_results.tau_curve(
        d, out, uniform=uniform, single=single, zero=zero, rules={"single": single_rule, "zero": zero_rule},
        names=names))
    emit("encore_weights", collect.encore_weights(runs, sweep),
         lambda d: plots_results.weight_heatmap(d, out, "tau", names, stem="encore_weights"))
    return written


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _value(table: pd.DataFrame, method: str) -> float | None:
    found = _reference(table, method)
    return found[0] if found else None


def _reference(table: pd.DataFrame, method: str) -> tuple[float, str | None] | None:
    """A method's Safety in ``table`` and the one rule it puts all weight on (None for a composed method)."""
    if table.empty or method not in set(table["method"]):
        return None
    row = table.loc[table["method"] == method].iloc[0]
    rule = row.get("rule")
    return float(row["safety"]), rule if isinstance(rule, str) and rule else None


def _first_ref(*found: tuple[float, str | None] | None) -> tuple[float | None, str | None]:
    return next((f for f in found if f is not None), (None, None))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-")[:60]
