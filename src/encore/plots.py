"""Figures, each drawn from a tidy DataFrame only (never from a model), saved as PNG and PDF.

Every function returns the paths it wrote. ``make_figures.py`` rebuilds all of them from run directories.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")


def _save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{stem}.{ext}"
        tmp = p.with_name(f".{p.name}.tmp")
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext)
        tmp.replace(p)
        paths.append(p)
    plt.close(fig)
    return paths


def entropy_vs_accuracy(stats: pd.DataFrame, out: Path, stem: str = "entropy_vs_accuracy") -> list[Path]:
    """Scatter of rule entropy vs accuracy with a least-squares line and r, one panel per ``dataset`` column value.

    Expects columns rule, entropy, accuracy and optionally dataset (default one panel).
    """
    if "dataset" not in stats:
        stats = stats.assign(dataset="")
    sets = list(pd.unique(stats["dataset"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], sets):
        d = stats[stats["dataset"] == name]
        x, y = d["entropy"].to_numpy(float), 100 * d["accuracy"].to_numpy(float)
        ax.scatter(x, y, s=28, color="tab:blue", zorder=3)
        for xi, yi, label in zip(x, y, d["rule"]):
            ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            slope, icept = np.polyfit(x[ok], y[ok], 1)
            xs = np.linspace(x[ok].min(), x[ok].max(), 50)
            ax.plot(xs, slope * xs + icept, color="tab:red", lw=1)
            r = np.corrcoef(x[ok], y[ok])[0, 1]
            ax.set_title(f"{name}  r = {r:.2f}".strip())
        ax.set_xlabel("rating entropy H (nats)")
        ax.set_ylabel("rule accuracy (%)")
    return _save(fig, out, stem)


def rule_weights(weights: pd.DataFrame, out: Path, stem: str = "weights") -> list[Path]:
    """Grouped bars: weight of each rule (x) per method (hue). Expects columns method, rule, weight (long form)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * weights["rule"].nunique() + 2), 3.6))
    sns.barplot(data=weights, x="rule", y="weight", hue="method", ax=ax, errorbar=None)
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    ax.set_ylabel("weight")
    return _save(fig, out, stem)


def main_results(table: pd.DataFrame, out: Path, stem: str = "main_results") -> list[Path]:
    """Horizontal bars of the headline score per method with 95% bootstrap intervals (and ± std across seeds)."""
    t = table.sort_values("safety")
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(t) + 1.2))
    y = np.arange(len(t))
    ax.barh(y, t["safety"], color="tab:blue", alpha=0.7)
    err = np.vstack([t["safety"] - t["safety_ci_low"], t["safety_ci_high"] - t["safety"]])
    ax.errorbar(t["safety"], y, xerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
    ax.set_yticks(y, t["method"])
    lo = max(0.0, float(np.nanmin(t["safety_ci_low"])) - 5)
    ax.set_xlim(lo, min(100.0, float(np.nanmax(t["safety_ci_high"])) + 5))
    ax.set_xlabel("Safety accuracy (%), 95% bootstrap CI")
    return _save(fig, out, stem)


def rating_histogram(ratings: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Tidy bin counts (rule, side, bin_low, bin_high, count) of ratings with columns rule, side, value."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for (rule, side), d in ratings.groupby(["rule", "side"], sort=False):
        counts, _ = np.histogram(d["value"].dropna(), bins=edges)
        rows += [{"rule": rule, "side": side, "bin_low": lo, "bin_high": hi, "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


def rating_distributions(hist: pd.DataFrame, out: Path, stem: str = "rating_distributions") -> list[Path]:
    """One panel per rule: its rating histogram, chosen and rejected overlaid. Input: :func:`rating_histogram`."""
    rules = list(pd.unique(hist["rule"]))
    cols = min(5, len(rules))
    rows = int(np.ceil(len(rules) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False, sharex=True)
    for ax, rule in zip(axes.flat, rules):
        for side, color in (("chosen", "tab:green"), ("rejected", "tab:red")):
            d = hist[(hist["rule"] == rule) & (hist["side"] == side)]
            ax.bar(d["bin_low"], d["count"], width=d["bin_high"] - d["bin_low"], align="edge", alpha=0.5,
                   color=color, label=side)
        ax.set_title(rule, fontsize=8)
    for ax in list(axes.flat)[len(rules):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    return _save(fig, out, stem)


def encore_weights_by_tau(weights: pd.DataFrame, out: Path, stem: str = "encore_weights") -> list[Path]:
    """ENCORE's weight per rule, one bar group per rule and one hue per τ. Input columns: tau, rule, weight."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * weights["rule"].nunique() + 2), 3.6))
    sns.barplot(data=weights.assign(tau=weights["tau"].map(lambda t: f"τ={t:g}")), x="rule", y="weight", hue="tau",
                ax=ax, errorbar=None, palette="viridis")
    ax.tick_params(axis="x", rotation=45)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    return _save(fig, out, stem)


def tau_curve(sweep: pd.DataFrame, out: Path, uniform: float | None = None, single: float | None = None,
              zero: float | None = None, stem: str = "accuracy_vs_tau") -> list[Path]:
    """Headline accuracy vs τ (log axis) with CI band; horizontal lines for the limits τ→∞ (uniform) and τ→0 (the
    lowest-entropy rule alone) and for the best single rule."""
    s = sweep.sort_values("tau")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(s["tau"], s["safety"], marker="o", color="tab:blue", label="ENCORE")
    if {"safety_ci_low", "safety_ci_high"} <= set(s):
        ax.fill_between(s["tau"], s["safety_ci_low"], s["safety_ci_high"], color="tab:blue", alpha=0.15)
    if uniform is not None:
        ax.axhline(uniform, color="tab:gray", ls="--", label="uniform (τ→∞)")
    if zero is not None:
        ax.axhline(zero, color="tab:green", ls="-.", label="lowest-entropy rule (τ→0)")
    if single is not None:
        ax.axhline(single, color="tab:orange", ls=":", label="best single rule")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(s["tau"], [f"{t:g}" for t in s["tau"]])
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("Safety accuracy (%)")
    ax.legend(fontsize=7)
    return _save(fig, out, stem)
