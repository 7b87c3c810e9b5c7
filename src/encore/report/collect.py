"""Read run directories back into tidy tables; nothing is recomputed and no tracking API is called.

A run directory is any folder holding a ``metrics.json`` written by :mod:`encore.run.pipeline`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from encore.cache.artifacts import read_json
from encore.report.studies import result_key, study_key


def find_runs(roots: list[str | Path]) -> list[Path]:
    """Every run directory under ``roots``, oldest first (by metrics.json modification time)."""
    runs = {p.parent.resolve() for r in roots for p in Path(r).expanduser().rglob("metrics.json")}
    return sorted(runs, key=lambda d: (d / "metrics.json").stat().st_mtime)


def run_meta(run: Path) -> dict:
    """What a run is (:mod:`encore.report.studies`): its data and pairs, rater, rules, backbone and evaluation set,
    with the ``study`` and ``result`` keys that tell runs apart."""
    run = Path(run)
    m = read_json(run / "metrics.json")
    stats = run / "rule_stats.csv"
    rules = list(pd.read_csv(stats, usecols=["rule"], dtype=str)["rule"]) if stats.exists() else None
    meta = {"run": str(run), "job": m.get("job"), "experiment": m.get("experiment"), "dataset": m.get("dataset"),
            "train_pairs": m.get("train_pairs"), "eval_fingerprint": m.get("eval_fingerprint"),
            "eval_set": m.get("eval_set"), "eval_pairs": m.get("eval_pairs"), "eval_metric": m.get("eval_metric"),
            "rater": (m.get("setup") or {}).get("rater"), "rater_key": (m.get("rating") or {}).get("rater_key"),
            "rules": rules, "setup": m.get("setup")}
    return {**meta, "study": study_key(meta), "result": result_key(meta)}


def significance(run: Path) -> pd.DataFrame | None:
    """The run's paired permutation tests against its reference method (None when it wrote none)."""
    p = Path(run) / "significance.csv"
    if not p.exists() or p.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        return None


def _flat(meta: dict) -> dict:
    """Run metadata as table columns (the nested setup and the rule list stay in the run's files)."""
    return {k: v for k, v in meta.items() if k not in ("setup", "rules")}


def _latest_per(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Runs are read oldest first, so the last row per key is the newest run."""
    return df.drop_duplicates(keys, keep="last").reset_index(drop=True)


def studies(runs: list[Path]) -> dict[str, dict]:
    """Every study among ``runs`` (:func:`encore.report.studies.study_key`), each as its newest run's metadata, in
    the order their newest runs were written: several studies on one dataset (a pilot and the full study) all
    appear, none is dropped for another."""
    newest: dict[str, dict] = {}
    for r in runs:
        meta = run_meta(r)
        newest.pop(meta["study"], None)
        newest[meta["study"]] = meta
    return newest


def rule_stats(runs: list[Path]) -> pd.DataFrame:
    """Per-rule entropy and accuracy, the newest run of each study; column ``study`` labels the panel."""
    frames = [pd.read_csv(r / "rule_stats.csv").assign(**_flat(run_meta(r))) for r in runs
              if (r / "rule_stats.csv").exists()]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    newest = df.groupby("study", sort=False)["run"].last()
    return df[df["run"].isin(newest)].reset_index(drop=True)


def correlations(runs: list[Path]) -> pd.DataFrame:
    rows = [{**_flat(run_meta(r)), **read_json(r / "correlation.json")} for r in runs if (r / "correlation.json").exists()]
    return _latest_per(pd.DataFrame(rows), ["study"]) if rows else pd.DataFrame()


def ratings(runs: list[Path]) -> pd.DataFrame:
    """Tidy ratings of the newest run of each study (columns ``dataset`` and ``study`` added)."""
    newest = {}
    for r in runs:
        if (r / "ratings.parquet").exists():
            meta = run_meta(r)
            newest.pop(meta["study"], None)
            newest[meta["study"]] = (r, meta["dataset"])
    frames = [pd.read_parquet(r / "ratings.parquet").assign(dataset=d, study=k) for k, (r, d) in newest.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def main_tables(runs: list[Path]) -> pd.DataFrame:
    """Every main_table row of every run, with its method parameters expanded (e.g. a ``tau`` column)."""
    frames = []
    for r in runs:
        if (r / "main_table.csv").exists():
            t = pd.read_csv(r / "main_table.csv").assign(**_flat(run_meta(r)))
            params = pd.DataFrame([json.loads(p) if isinstance(p, str) else {} for p in t["params"]])
            frames.append(pd.concat([t, params.drop(columns=[c for c in params if c in t])], axis=1))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def full_tables(tables: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The main table of each result (:func:`encore.report.studies.result_key`): the run of that result that
    compared the most methods (the newest of those), so the few reference rows each τ-sweep job carries never
    displace it; results whose runs compared fewer than two methods have none."""
    out = {}
    for key, t in (tables.groupby("result", sort=False) if not tables.empty else []):
        n = t.groupby("run", sort=False)["method"].nunique()
        if n.max() >= 2:
            best = [r for r in t["run"].unique() if n[r] == n.max()][-1]
            out[key] = t[t["run"] == best].reset_index(drop=True)
    return out


def tau_sweeps(tables: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """ENCORE rows by τ, per result with more than one τ; within a result the newest run wins per τ."""
    if tables.empty or "tau" not in tables:
        return {}
    enc = tables[(tables["method"] == "encore") & tables["tau"].notna()]
    return {key: _latest_per(e, ["tau"]).sort_values("tau").reset_index(drop=True)
            for key, e in enc.groupby("result", sort=False) if e["tau"].nunique() > 1}


def encore_weights(runs: list[Path], taus: pd.DataFrame) -> pd.DataFrame:
    """ENCORE's weight per rule for each τ of the sweep (long form: tau, rule, weight)."""
    frames = []
    for _, row in taus.iterrows():
        w = pd.read_csv(Path(row["run"]) / "weights_long.csv")
        frames.append(w[w["method"] == "encore"].assign(tau=row["tau"])[["tau", "rule", "weight"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_groups(runs: list[Path]) -> pd.DataFrame:
    """One row per (experiment, job, result): a τ sweep's jobs (ENCORE rows at more than one τ) as one sweep with
    its τ grid, single runs as themselves, a pilot apart from the study it preceded (they differ in pairs); single
    runs first, each group newest run last. Columns: kind ("run" or "τ sweep"), experiment, job, dataset,
    train_pairs, rater, n_runs, taus, newest."""
    cols = ["kind", "experiment", "job", "dataset", "train_pairs", "rater", "n_runs", "taus", "newest"]
    if not runs:
        return pd.DataFrame(columns=cols)
    meta = pd.DataFrame([_flat(run_meta(r)) for r in runs])
    tables = main_tables(runs)
    enc = tables[tables["method"] == "encore"] if "tau" in tables else pd.DataFrame(columns=["run", "tau"])
    rows = []
    for (exp, job, _), g in meta.groupby(["experiment", "job", "result"], sort=False, dropna=False):
        taus = sorted(enc.loc[enc["run"].isin(g["run"]), "tau"].dropna().unique())
        last = g.iloc[-1]
        rows.append({"kind": "τ sweep" if len(taus) > 1 else "run", "experiment": exp, "job": job,
                     "dataset": last["dataset"], "train_pairs": last["train_pairs"], "rater": last["rater"],
                     "n_runs": len(g), "taus": ", ".join(f"{t:g}" for t in taus), "newest": last["run"]})
    return pd.DataFrame(rows, columns=cols).sort_values("kind", key=lambda k: k != "run",
                                                        kind="stable").reset_index(drop=True)
