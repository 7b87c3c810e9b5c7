"""Figures of the study, each drawn from tidy DataFrames only (never from a model) in the project style
(:mod:`encore.report.style`) and saved as PDF (TrueType fonts) and 300-dpi PNG. ``draw_*`` builds the figure (tests inspect
it with matplotlib's renderer); the function without the prefix saves it and returns the paths.
Results figures (main table, τ, weights) are in :mod:`encore.report.plots_results`.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from encore.cache.artifacts import write_bytes  # noqa: E402
from encore.report import style  # noqa: E402
from encore.report.labels import label_rules  # noqa: E402
from encore.report.style import MUTED, ONE_COL, OTHER, TWO_COL, Names, unit_of  # noqa: E402


def save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    """PDF and PNG, each rendered in memory and written atomically under a unique temporary name
    (:func:`encore.cache.artifacts.write_bytes`), so two processes drawing into one folder never trip over each other."""
    paths = []
    for ext in ("pdf", "png"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        paths.append(write_bytes(out / f"{stem}.{ext}", buf.getvalue()))
    plt.close(fig)
    return paths


def wrap(text: str, width: int = 14) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def draw_entropy_vs_accuracy(stats: pd.DataFrame, corr: pd.DataFrame | None = None, names: Names | None = None,
                             titles: dict[str, str] | None = None) -> plt.Figure:
    """Rule entropy vs accuracy, one panel per ``dataset`` (the paper's figure): per-rule 95% bootstrap intervals on
    accuracy, the least-squares line with its 95% bootstrap band (``sns.regplot``), Pearson r with its interval and
    p under the panel's title, and rule labels (:mod:`encore.report.labels`). The y range holds every interval and
    the whole band (within 0-100%). ``corr``: rows of correlation.json per dataset; ``titles``: a panel title per
    dataset (default: its display name; an own-data run passes the name of its data)."""
    style.apply()
    names = names or Names.from_config()
    stats = stats if "dataset" in stats else stats.assign(dataset="")
    sets = list(pd.unique(stats["dataset"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(ONE_COL if len(sets) == 1 else TWO_COL, 2.9), squeeze=False,
                             layout="constrained")
    for i, (ax, name) in enumerate(zip(axes[0], sets)):
        d = stats[stats["dataset"] == name]
        x, y = d["entropy"].to_numpy(float), 100 * d["accuracy"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        if {"accuracy_ci_low", "accuracy_ci_high"} <= set(d):
            err = np.abs(np.vstack([y - 100 * d["accuracy_ci_low"], 100 * d["accuracy_ci_high"] - y]))
            err = np.nan_to_num(err)  # an interval the pairs cannot support (NaN): no bar
        else:
            err = None
        ax.errorbar(x, y, yerr=err, fmt="o", color=OTHER, ecolor=OTHER, elinewidth=0.6, capsize=1.5, ms=3.5,
                    zorder=3, alpha=0.9)
        lo_y = y[ok] - (err[0][ok] if err is not None else 0)
        hi_y = y[ok] + (err[1][ok] if err is not None else 0)
        span = [np.nanmin(lo_y), np.nanmax(hi_y)]
        if ok.sum() >= 3 and np.ptp(x[ok]) > 0:  # least-squares line and its 95% bootstrap band
            sns.regplot(x=x[ok], y=y[ok], ax=ax, scatter=False, ci=95, n_boot=1000, seed=0, truncate=True,
                        color=MUTED, line_kws=dict(lw=0.8, ls="--", zorder=2))
            band = []
            for c in ax.collections:  # the band ends where accuracy does (0 and 100%), drawn whole within them
                if isinstance(c, PolyCollection):
                    c.set_verts([np.column_stack([p.vertices[:, 0], np.clip(p.vertices[:, 1], 0.0, 100.0)])
                                 for p in c.get_paths()])
                    band += [p.vertices[:, 1] for p in c.get_paths()]
            band = np.concatenate(band or [np.array(span)])
            span = [min(span[0], band.min()), max(span[1], band.max())]
        pad_x, pad_y = 0.15 * max(np.ptp(x[ok]), 1e-3), 0.08 * max(span[1] - span[0], 1.0)
        ax.set_xlim(x[ok].min() - pad_x, x[ok].max() + pad_x)
        ax.set_ylim(span[0] - pad_y, span[1] + pad_y)  # whole intervals and band, never clipped
        ax.set_title((titles or {}).get(name) or (names.dataset(name) if name else ""))
        ax.set_xlabel(f"Rating entropy $H$ ({unit_of(d)})")
        if i == 0:
            ax.set_ylabel("Rule accuracy (%)")
        row = corr[corr["dataset"] == name] if corr is not None and "dataset" in corr else None
        # correlation.json stores an undefined r (all entropies equal) as null: read it as NaN, draw no annotation
        if row is not None and len(row) and np.isfinite(pd.to_numeric(row["pearson_r"], errors="coerce").iloc[0]):
            r = row.iloc[-1]  # under the title, where it never covers a point or a label
            lo, hi = (pd.to_numeric(r.get(f"pearson_r_ci_{e}"), errors="coerce") for e in ("low", "high"))
            ci = f"[{lo:.2f}, {hi:.2f}] pair bootstrap" if np.isfinite([lo, hi]).all() else "(CI n/a: few pairs)"
            ax.set_title(f"{ax.get_title()}\n$r$ = {r['pearson_r']:.2f} {ci}\n$p$ = {r['pearson_p']:.2g} over "
                         f"$K$ = {int(r.get('n_rules', ok.sum()))} rules".strip())
        if ok.any():
            fit = [ln for ln in ax.lines if ln.get_linestyle() == "--"]  # labels keep off the fit line too
            label_rules(fig, ax, x[ok], y[ok], [names.rule(r) for r in d["rule"][ok]], fit, (x[ok], lo_y, hi_y))
    return fig


def entropy_vs_accuracy(stats: pd.DataFrame, out: Path, corr: pd.DataFrame | None = None, names: Names | None = None,
                        stem: str = "entropy_vs_accuracy", titles: dict[str, str] | None = None) -> list[Path]:
    return save(draw_entropy_vs_accuracy(stats, corr, names, titles), out, stem)


def rating_histogram(ratings: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Tidy bin counts (rule, side, bin_low, bin_high, count) of ratings with columns rule, side, value."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for (rule, side), d in ratings.groupby(["rule", "side"], sort=False):
        counts, _ = np.histogram(d["value"].dropna(), bins=edges)
        rows += [{"rule": rule, "side": side, "bin_low": lo, "bin_high": hi, "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


MAX_PANELS = 20  # rating histograms drawn; with more rules, the first ones (the figure says so)


def draw_rating_distributions(hist: pd.DataFrame, names: Names | None = None) -> plt.Figure:
    """One panel per rule (at most ``MAX_PANELS``): its rating histogram, chosen and rejected overlaid. Input:
    :func:`rating_histogram`."""
    style.apply()
    names = names or Names.from_config()
    every = list(pd.unique(hist["rule"]))
    rules = every[:MAX_PANELS]  # a bounded figure whatever the number of rules
    cols = min(5, len(rules))
    rows = int(np.ceil(len(rules) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(TWO_COL, 1.35 * rows + 0.45), squeeze=False, sharex=True,
                             layout="constrained")
    for ax, rule in zip(axes.flat, rules):
        c = hist[(hist["rule"] == rule) & (hist["side"] == "chosen")]
        r = hist[(hist["rule"] == rule) & (hist["side"] == "rejected")]
        ax.bar(c["bin_low"], c["count"], width=c["bin_high"] - c["bin_low"], align="edge", alpha=0.5,
               color=style.OKABE_ITO[0], label="chosen")
        if len(r):  # rejected as an outline, so both distributions stay readable where they overlap
            ax.stairs(r["count"].to_numpy(), np.append(r["bin_low"].to_numpy(), r["bin_high"].iloc[-1]),
                      color="#000000", lw=0.8, label="rejected")  # ENCORE's colour stays ENCORE's
        ax.set_title(wrap(names.rule(rule), 22), fontsize=6.5)
        ax.tick_params(labelsize=5.5)
        ax.set_xticks([0, 0.5, 1])
    for ax in list(axes.flat)[len(rules):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] != "chosen")
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside upper center", ncols=2)
    more = f"  (the first {len(rules)} of {len(every)} rules)" if len(rules) < len(every) else ""
    fig.supxlabel("rating ψ" + more, fontsize=6.5)
    fig.supylabel("responses", fontsize=6.5)
    return fig


def rating_distributions(hist: pd.DataFrame, out: Path, names: Names | None = None,
                         stem: str = "rating_distributions") -> list[Path]:
    return save(draw_rating_distributions(hist, names), out, stem)
