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
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

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
    """Lines of at most ``width`` characters, broken at spaces only: a name like "all-MiniLM-L6-v2" stays whole
    (a line holding one longer word runs over rather than cut it)."""
    return "\n".join(textwrap.wrap(str(text), width, break_on_hyphens=False, break_long_words=False)) or str(text)


def wrap_clauses(text: str, width: int) -> str:
    """Like :func:`wrap`, but breaking between the clauses of a title ("evaluated on ...; trained on ...") first:
    clauses are packed onto lines of at most ``width`` characters, a longer clause wrapped at its spaces."""
    lines: list[str] = []
    for clause in str(text).split("; "):
        if lines and len(lines[-1]) + 2 + len(clause) <= width:
            lines[-1] += "; " + clause
        else:
            if lines:
                lines[-1] += ";"
            lines += wrap(clause, width).split("\n")
    return "\n".join(lines)


def fit_key(fig: plt.Figure) -> None:
    """The key of the least-squares line and its grey band, above the panels (where it covers nothing)."""
    handles = [Line2D([], [], color=MUTED, lw=0.8, ls="--"), Patch(color=MUTED, alpha=0.25, lw=0),
               Line2D([], [], color=OTHER, marker="o", ms=3, ls="", lw=0.6)]
    fig.legend(handles, ["least-squares fit", "its 95% bootstrap band", "rule, 95% CI"], loc="outside upper center",
               ncols=3 if fig.get_figwidth() > ONE_COL else 2, handlelength=1.6, columnspacing=1.0)


def clip_fit(line: Line2D, lo: float = 0.0, hi: float = 100.0) -> None:
    """Cut a straight fit line where it leaves [lo, hi] (an accuracy of 0-100%), exactly at the crossing."""
    x, y = (np.asarray(v, float) for v in line.get_data())
    if len(x) < 2 or x[-1] == x[0]:
        return
    slope = (y[-1] - y[0]) / (x[-1] - x[0])
    if slope == 0:
        return
    ends = sorted(x[0] + (np.array([lo, hi]) - y[0]) / slope)
    a, b = max(x.min(), ends[0]), min(x.max(), ends[1])
    xs = np.linspace(a, b, len(x)) if a < b else x[:0]
    line.set_data(xs, y[0] + slope * (xs - x[0]))


def draw_entropy_vs_accuracy(stats: pd.DataFrame, corr: pd.DataFrame | None = None, names: Names | None = None,
                             titles: dict[str, str] | None = None) -> plt.Figure:
    """Rule entropy vs accuracy, one panel per study (column ``study``, else ``dataset``; the paper's figure):
    per-rule 95% bootstrap intervals on accuracy, the least-squares line (cut at 0 and 100%) with its 95% bootstrap
    band (``sns.regplot``), both keyed above the panels, Pearson r with its interval and p under the panel's title,
    and rule labels (:mod:`encore.report.labels`). The y range holds every interval and the whole band (ticks
    within 0-100%). ``corr``: rows of correlation.json per study; ``titles``: a panel title per study (data, pairs,
    rater: :func:`encore.report.studies.about_study`; default: the dataset's display name)."""
    style.apply()
    names = names or Names.from_config()
    stats = stats if "dataset" in stats else stats.assign(dataset="")
    by = "study" if "study" in stats else "dataset"
    sets = list(pd.unique(stats[by]))
    cols = min(len(sets), 3)
    rows = int(np.ceil(len(sets) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(ONE_COL if cols == 1 else TWO_COL, 2.9 * rows + 0.25),
                             squeeze=False, layout="constrained")
    title_chars = int((ONE_COL if cols == 1 else TWO_COL / cols) * 72 / (0.55 * 7.5))  # at the title's 7.5 pt
    fitted, todo = False, []
    for i, (ax, name) in enumerate(zip(axes.flat, sets)):
        d = stats[stats[by] == name]
        style.check_glyphs([names.rule(r) for r in d["rule"]])
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
            fitted = True
            band = []
            for c in ax.collections:  # the band ends where accuracy does (0 and 100%), drawn whole within them
                if isinstance(c, PolyCollection):
                    c.set_verts([np.column_stack([p.vertices[:, 0], np.clip(p.vertices[:, 1], 0.0, 100.0)])
                                 for p in c.get_paths()])
                    band += [p.vertices[:, 1] for p in c.get_paths()]
            for ln in ax.lines:
                if ln.get_linestyle() == "--":
                    clip_fit(ln)  # and so does the line
            band = np.concatenate(band or [np.array(span)])
            span = [min(span[0], band.min()), max(span[1], band.max())]
        pad_x, pad_y = 0.15 * max(np.ptp(x[ok]), 1e-3), 0.08 * max(span[1] - span[0], 1.0)
        ax.set_xlim(x[ok].min() - pad_x, x[ok].max() + pad_x)
        ax.set_ylim(span[0] - pad_y, span[1] + pad_y)  # whole intervals and band, never clipped
        ax.yaxis.set_major_locator(BoundedLocator(0.0, 100.0))  # no tick of an accuracy above 100% or below 0
        ax.set_title(wrap((titles or {}).get(name) or names.dataset(d["dataset"].iloc[0]) or "", title_chars))
        ax.set_xlabel(f"Rating entropy $H$ ({unit_of(d)})")
        if i % cols == 0:
            ax.set_ylabel("Rule accuracy (%)")
        row = corr[corr[by] == name] if corr is not None and by in corr else None
        # correlation.json stores an undefined r (all entropies equal) as null: read it as NaN, draw no annotation
        if row is not None and len(row) and np.isfinite(pd.to_numeric(row["pearson_r"], errors="coerce").iloc[0]):
            r = row.iloc[-1]  # under the title, where it never covers a point or a label
            lo, hi = (pd.to_numeric(r.get(f"pearson_r_ci_{e}"), errors="coerce") for e in ("low", "high"))
            ci = f"[{lo:.2f}, {hi:.2f}] pair bootstrap" if np.isfinite([lo, hi]).all() else "(CI n/a: few pairs)"
            ax.set_title(f"{ax.get_title()}\n$r$ = {r['pearson_r']:.2f} {ci}\n$p$ = {r['pearson_p']:.2g} over "
                         f"$K$ = {int(r.get('n_rules', ok.sum()))} rules".strip())
        if ok.any():
            fit = [ln for ln in ax.lines if ln.get_linestyle() == "--"]  # labels keep off the fit line too
            todo.append((ax, x[ok], y[ok], [names.rule(r) for r in d["rule"][ok]], fit, (x[ok], lo_y, hi_y)))
    for ax in list(axes.flat)[len(sets):]:
        ax.axis("off")
    if fitted:
        fit_key(fig)
    label_panels(fig, todo)
    return fig


def label_panels(fig: plt.Figure, todo: list[tuple]) -> None:
    """Label each panel (:func:`label_rules`); a panel's key changes the layout of all, so a panel whose axes
    moved after it was labelled is labelled again on the settled layout (at most twice)."""
    placed: dict[int, tuple[list, object]] = {}
    for _ in range(3):
        moved = [i for i, (ax, *_) in enumerate(todo) if i not in placed or placed[i][1] != _box(fig, ax)]
        if not moved:
            return
        for i in moved:
            ax = todo[i][0]
            for t in placed.get(i, ([], None))[0]:
                t.remove()
            before = set(ax.texts)
            label_rules(fig, *todo[i])
            placed[i] = ([t for t in ax.texts if t not in before], _box(fig, ax))  # the layout it was placed on


def _box(fig: plt.Figure, ax: plt.Axes) -> tuple:
    fig.canvas.draw()
    return tuple(np.round(ax.get_window_extent().extents, 1))


class BoundedLocator(MaxNLocator):
    """Matplotlib's round ticks, less those outside [lo, hi] (an accuracy axis with room above 100% for a marker
    shows no "110")."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__(nbins="auto", steps=[1, 2, 2.5, 5, 10])
        self.lo, self.hi = lo, hi

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        t = super().tick_values(vmin, vmax)
        return t[(t >= self.lo - 1e-9) & (t <= self.hi + 1e-9)]


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


def draw_rating_distributions(hist: pd.DataFrame, names: Names | None = None, title: str = "") -> plt.Figure:
    """One panel per rule (at most ``MAX_PANELS``): its rating histogram, chosen and rejected overlaid, counts on
    whole-number ticks. Input: :func:`rating_histogram`; ``title``: the study (data, pairs, rater)."""
    style.apply()
    names = names or Names.from_config()
    every = list(pd.unique(hist["rule"]))
    style.check_glyphs([names.rule(r) for r in every])
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
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # counts: 0, 5, 10, never 2.5
    for ax in list(axes.flat)[len(rules):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] != "chosen")
    # the study as the legend's title: a suptitle and a figure legend both "outside upper" overlap in matplotlib
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside upper center", ncols=2,
               title=wrap(f"Rating distributions: {title}", 110) if title else None, title_fontsize=7.5)
    more = f"  (the first {len(rules)} of {len(every)} rules)" if len(rules) < len(every) else ""
    fig.supxlabel("rating ψ" + more, fontsize=6.5)
    fig.supylabel("responses (count)", fontsize=6.5)
    return fig


def rating_distributions(hist: pd.DataFrame, out: Path, names: Names | None = None,
                         stem: str = "rating_distributions", title: str = "") -> list[Path]:
    return save(draw_rating_distributions(hist, names, title), out, stem)
