"""Read run directories back into tidy tables; nothing is recomputed and no tracking API is called.

A run directory is any folder holding a ``metrics.json`` written by :mod:`encore.run.pipeline`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from encore.cache.artifacts import read_json


def find_runs(roots: list[str | Path]) -> list[Path]:
    """Every run directory under ``roots``, oldest first (by metrics.json modification time)."""
    runs = {p.parent.resolve() for r in roots for p in Path(r).expanduser().rglob("metrics.json")}
    return sorted(runs, key=lambda d: (d / "metrics.json").stat().st_mtime)


def run_meta(run: Path) -> dict:
    m = read_json(run / "metrics.json")
    return {"run": str(run), "job": m.get("job"), "experiment": m.get("experiment"), "dataset": m.get("dataset"),
            "eval_fingerprint": m.get("eval_fingerprint"), "setup": m.get("setup")}


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
    """Run metadata as table columns (the nested setup stays in metrics.json)."""
    return {k: v for k, v in meta.items() if k != "setup"}


def _latest_per(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Runs are read oldest first, so the last row per key is the newest run."""
    return df.drop_duplicates(keys, keep="last").reset_index(drop=True)


def rule_stats(runs: list[Path]) -> pd.DataFrame:
    """Per-rule entropy and accuracy, newest run per dataset; column ``dataset`` labels the panel."""
    frames = [pd.read_csv(r / "rule_stats.csv").assign(**_flat(run_meta(r))) for r in runs
              if (r / "rule_stats.csv").exists()]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    newest = df.groupby("dataset")["run"].last()
    return df[df["run"].isin(newest)].reset_index(drop=True)


def correlations(runs: list[Path]) -> pd.DataFrame:
    rows = [{**_flat(run_meta(r)), **read_json(r / "correlation.json")} for r in runs if (r / "correlation.json").exists()]
    return _latest_per(pd.DataFrame(rows), ["dataset"]) if rows else pd.DataFrame()


def ratings(runs: list[Path]) -> pd.DataFrame:
    """Tidy ratings of the newest run per dataset."""
    have = [r for r in runs if (r / "ratings.parquet").exists()]
    newest = {}
    for r in have:
        newest[run_meta(r)["dataset"]] = r
    frames = [pd.read_parquet(r / "ratings.parquet").assign(dataset=d) for d, r in newest.items()]
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


def latest_full_table(tables: pd.DataFrame) -> pd.DataFrame:
    """The paper's main table: the run that compared the most methods (the newest of those), so the few reference
    rows each τ-sweep job carries never displace it."""
    if tables.empty:
        return tables
    n = tables.groupby("run", sort=False)["method"].nunique()
    if n.max() < 2:
        return pd.DataFrame()
    best = [r for r in tables["run"].unique() if n[r] == n.max()][-1]
    return tables[tables["run"] == best].reset_index(drop=True)


def tau_sweep(tables: pd.DataFrame) -> pd.DataFrame:
    """ENCORE rows by τ on the evaluation set of the newest ENCORE run; the newest run wins per τ."""
    if tables.empty or "tau" not in tables:
        return pd.DataFrame()
    enc = tables[(tables["method"] == "encore") & tables["tau"].notna()]
    if enc.empty:
        return enc
    enc = enc[enc["eval_fingerprint"] == enc["eval_fingerprint"].iloc[-1]]
    return _latest_per(enc, ["tau"]).sort_values("tau").reset_index(drop=True)


def encore_weights(runs: list[Path], taus: pd.DataFrame) -> pd.DataFrame:
    """ENCORE's weight per rule for each τ of the sweep (long form: tau, rule, weight)."""
    frames = []
    for _, row in taus.iterrows():
        w = pd.read_csv(Path(row["run"]) / "weights_long.csv")
        frames.append(w[w["method"] == "encore"].assign(tau=row["tau"])[["tau", "rule", "weight"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_groups(runs: list[Path]) -> pd.DataFrame:
    """One row per (experiment, job, dataset): a τ sweep's jobs (ENCORE rows at more than one τ) as one sweep with
    its τ grid, single runs as themselves; single runs first, each group newest run last. Columns: kind ("run" or
    "τ sweep"), experiment, job, dataset, n_runs, taus, newest."""
    if not runs:
        return pd.DataFrame(columns=["kind", "experiment", "job", "dataset", "n_runs", "taus", "newest"])
    meta = pd.DataFrame([run_meta(r) for r in runs])
    tables = main_tables(runs)
    enc = tables[tables["method"] == "encore"] if "tau" in tables else pd.DataFrame(columns=["run", "tau"])
    rows = []
    for (exp, job, ds), g in meta.groupby(["experiment", "job", "dataset"], sort=False, dropna=False):
        taus = sorted(enc.loc[enc["run"].isin(g["run"]), "tau"].dropna().unique())
        rows.append({"kind": "τ sweep" if len(taus) > 1 else "run", "experiment": exp, "job": job, "dataset": ds,
                     "n_runs": len(g), "taus": ", ".join(f"{t:g}" for t in taus), "newest": g["run"].iloc[-1]})
    return pd.DataFrame(rows).sort_values("kind", key=lambda k: k != "run", kind="stable").reset_index(drop=True)
