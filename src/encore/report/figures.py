"""The paper's figures, rebuilt from run directories: each PNG/PDF is written next to the tidy CSV it is drawn from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from encore.report import collect, plots, plots_results
from encore.cache.artifacts import read_json, write_frame
from encore.report.studies import about_result, about_study, short, suffixes
from encore.report.style import Names
from encore.report.tables import write_tables

log = logging.getLogger(__name__)


def study_frames(run_dir: Path, meta: dict, names: Names) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """One run's rule stats and correlation as :func:`collect.rule_stats` and :func:`collect.correlations` give them
    (a ``study`` column naming the panel) and the panel's title, so the per-run figure is drawn from the inputs the
    rebuilt one gets and :func:`plots.draw_entropy_vs_accuracy` picks the same labels (names or numbers) for both."""
    stats = pd.read_csv(run_dir / "rule_stats.csv").assign(dataset=meta["dataset"], study=meta["study"])
    p = run_dir / "correlation.json"
    corr = pd.DataFrame([{"dataset": meta["dataset"], "study": meta["study"], **read_json(p)}]) if p.exists() else None
    return stats, corr, {meta["study"]: about_study(meta, names.dataset(meta["dataset"]))}


def results_title(setup: dict | None) -> str:
    """The main results' title: the evaluation set by its own name (``setup["eval"]``, :mod:`encore.data.names`) and
    the backbone that scored it, a hub id or path shown by its last part."""
    s = setup or {}
    backbone = short(s.get("backbone"))
    return f"{s.get('eval') or 'RewardBench'}" + (f", backbone {backbone}" if backbone else "")


def metric_of(meta: dict) -> str:
    """The headline's name as axes say it: "Safety" on RewardBench's Safety subsets, else "Accuracy"."""
    return "Safety" if str(meta.get("eval_metric") or "Safety") == "Safety" else "Accuracy"


def run_figures(run_dir: Path, tracker: Any = None, dataset: str = "", setup: dict | None = None) -> list[Path]:
    """Per-run figures, from the run's own CSVs, with the display names the run recorded, each titled with what the
    run is (its ``metrics.json``: data, pairs, rater, evaluation set, backbone; ``dataset`` and ``setup`` are used
    for a run whose metrics.json is not written yet)."""
    out, names = run_dir / "figures", Names.from_run(run_dir)
    run_dir = Path(run_dir)
    meta = (collect.run_meta(run_dir) if (run_dir / "metrics.json").exists() else
            {"dataset": dataset, "setup": setup, "study": dataset, "result": dataset})
    study = about_study(meta, names.dataset(meta["dataset"]))
    paths: list[Path] = []
    if (run_dir / "rule_stats.csv").exists():
        stats, corr, titles = study_frames(run_dir, meta, names)
        paths += plots.entropy_vs_accuracy(stats, out, corr, names, titles=titles)
    if (run_dir / "ratings.parquet").exists():
        hist = plots.rating_histogram(pd.read_parquet(run_dir / "ratings.parquet"))
        paths += plots.rating_distributions(hist, out, names, title=study)
    weights = pd.read_csv(run_dir / "weights_long.csv") if (run_dir / "weights_long.csv").exists() else None
    about = about_result(meta, names.dataset(meta["dataset"]))
    if weights is not None and len(weights):  # empty when only a judge ran
        paths += plots_results.weight_heatmap(weights, out, "method", names, title=about)
    if (run_dir / "main_table.csv").exists():
        paths += plots_results.main_results(pd.read_csv(run_dir / "main_table.csv"), out,
                                            collect.significance(run_dir), names, title=results_title(setup),
                                            about=about)
    if tracker is not None:
        for p in paths:
            if p.suffix == ".png":
                tracker.log_image(f"figures/{p.stem}", p)
    return paths


def make_figures(roots: list[str | Path], out: Path) -> list[Path]:
    """Every figure and table from run directories alone, each written next to the tidy CSV it is drawn from. Runs
    are told apart by what they are (:mod:`encore.report.studies`): the entropy figure has a panel per study, and
    every other figure and table is drawn once per study or result (a suffix naming it when there are several), so
    a pilot and the full study on one dataset both appear; each is logged with what it is."""
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

    found = collect.studies(runs)
    titles = {k: about_study(m, names.dataset(m["dataset"])) for k, m in found.items()}
    for k in found:
        log.info("study: %s (newest run %s)", titles[k], found[k]["run"])
    stats, corr = collect.rule_stats(runs), collect.correlations(runs)
    emit("entropy_vs_accuracy", stats, lambda d: plots.entropy_vs_accuracy(d, out, corr, names, titles=titles))
    emit("correlations", corr, lambda d: [])
    named = suffixes(((k, m) for k, m in found.items()), named=True)  # per-study files carry their study's name
    for key in (pd.unique(stats["study"]) if not stats.empty else []):
        written += write_tables(out, names, stats=stats[stats["study"] == key], about=titles[key],
                                stats_name=f"rule_stats{named[key]}.tex")
    ratings = collect.ratings(runs)
    for key in (pd.unique(ratings["study"]) if not ratings.empty else []):
        hist = plots.rating_histogram(ratings[ratings["study"] == key])
        stem = f"rating_distributions{named[key]}"
        emit(stem, hist, lambda d, stem=stem, key=key: plots.rating_distributions(d, out, names, stem=stem,
                                                                                 title=titles[key]))
    tables = collect.main_tables(runs)
    fulls, sweeps = collect.full_tables(tables), collect.tau_sweeps(tables)
    metas = {k: collect.run_meta(Path(t["run"].iloc[-1])) for k, t in {**sweeps, **fulls}.items()}
    suffix = suffixes(metas.items(), key="result")
    for key, full in fulls.items():
        run, meta = Path(full["run"].iloc[0]), metas[key]
        about = about_result(meta, names.dataset(meta["dataset"]))
        log.info("main results: %s (run %s)", about, run)
        emit(f"main_results{suffix[key]}", full, lambda d, run=run, meta=meta, about=about, key=key: (
            plots_results.main_results(d, out, collect.significance(run), names, stem=f"main_results{suffix[key]}",
                                       title=results_title(meta.get("setup")), about=about)))
        written += write_tables(out, names, table=full, setup=meta.get("setup"), pairs=_pairs(meta),
                                table_name=f"main_table{suffix[key]}")
    for key, sweep in sweeps.items():
        meta, full = metas[key], fulls.get(key, pd.DataFrame())
        about = about_result(meta, names.dataset(meta["dataset"]))
        log.info("τ sweep: %s (%d runs)", about, sweep["run"].nunique())
        # Reference lines from the sweep's own jobs (experiment=tau_sweep evaluates the limits in each), else the
        # main table of the same result.
        own = tables[tables["run"].isin(sweep["run"])]
        uniform = _first(_value(own, "tau_to_inf"), _value(full, "uniform"))
        single, single_rule = _first_ref(_reference(own, "single_rule"), _reference(full, "single_rule"))
        zero, zero_rule = _reference(own, "tau_to_zero") or (None, None)
        emit(f"accuracy_vs_tau{suffix[key]}", sweep, lambda d, s=suffix[key], a=about, m=metric_of(meta), u=uniform,
             si=single, z=zero, rs={"single": single_rule, "zero": zero_rule}: plots_results.tau_curve(
                 d, out, uniform=u, single=si, zero=z, rules=rs, names=names, stem=f"accuracy_vs_tau{s}", title=a,
                 metric=m))
        emit(f"encore_weights{suffix[key]}", collect.encore_weights(runs, sweep),
             lambda d, s=suffix[key], a=about: plots_results.weight_heatmap(d, out, "tau", names,
                                                                           stem=f"encore_weights{s}", title=a))
    return written


def _pairs(meta: dict) -> dict:
    return {"train": meta.get("train_pairs"), "eval": meta.get("eval_pairs")}


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
