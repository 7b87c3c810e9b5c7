"""Figures of the study, each drawn from tidy DataFrames only (never from a model) in the project style
(:mod:`encore.report.style`) and saved as PDF (TrueType fonts) and 300-dpi PNG. ``draw_*`` builds the figure (tests inspect
it with matplotlib's renderer); the function without the prefix saves it and returns the paths.
Results figures (main table, τ, weights) are in :mod:`encore.report.plots_results`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from encore.report import style  # noqa: E402
from encore.report.style import MUTED, ONE_COL, OTHER, TWO_COL, Names  # noqa: E402


def save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    """PDF and PNG, each written to a temporary name and renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("pdf", "png"):
        p = out / f"{stem}.{ext}"
        tmp = p.with_name(f".{p.name}.tmp")
        fig.savefig(tmp, format=ext)
        tmp.replace(p)
        paths.append(p)
    plt.close(fig)
    return paths


def wrap(text: str, width: int = 14) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def _emptiest_corner(ax: plt.Axes, x: np.ndarray, y: np.ndarray) -> tuple[float, float, str, str]:
    """Axes coordinates and alignment of the corner whose 40% x 30% box holds the fewest points."""
    pts = ax.transAxes.inverted().transform(ax.transData.transform(np.column_stack([x, y])))
    best = None
    for cx, cy, ha, va in ((0.03, 0.04, "left", "bottom"), (0.97, 0.96, "right", "top"),
                           (0.97, 0.04, "right", "bottom"), (0.03, 0.96, "left", "top")):
        inside = ((np.abs(pts[:, 0] - cx) < 0.4) & (np.abs(pts[:, 1] - cy) < 0.3)).sum()
        if best is None or inside < best[0]:
            best = (inside, (cx, cy, ha, va))
    return best[1]


def _interval_boxes(ax: plt.Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list:
    """Display-coordinate boxes of vertical error bars (3 px wide), for labels to keep off."""
    from matplotlib.transforms import Bbox

    a, b = ax.transData.transform(np.column_stack([x, lo])), ax.transData.transform(np.column_stack([x, hi]))
    return [Bbox([[p[0] - 1.5, p[1]], [p[0] + 1.5, q[1]]]) for p, q in zip(a, b) if np.isfinite(p).all() and
            np.isfinite(q).all()]


MAX_NAMED = 10  # more labelled points than this (or a point shared by 3+ rules): points carry numbers, a key names them
ITERATIONS = 400  # adjustText steps per attempt (its error reaches 0 sooner on uncluttered panels)
NEAR_PX = 4.0  # a label this close to its own point, and clearly nearer it than any other, needs no connector


def _place_labels(fig: plt.Figure, ax: plt.Axes, labels: list, x: np.ndarray, y: np.ndarray, others: list,
                  bars: tuple[np.ndarray, np.ndarray, np.ndarray]) -> bool:
    """adjustText keeps the labels (label ``i`` belongs to point ``x[i]``, ``y[i]``) off each other, the points, the
    intervals ``bars`` (x, low, high) and ``others``, pulling each towards its own point; when a label still covers a
    point or another label (dense clusters), it runs again from there with stronger repulsion. Returns whether that
    worked. Connectors are drawn afterwards by :func:`_attach`, to the points themselves."""
    from adjustText import adjust_text

    for k in range(4):
        fig.canvas.draw()  # settle the layout: the boxes to avoid are in display coordinates
        avoid = [t.get_window_extent() for t in others] + _interval_boxes(ax, *bars)
        adjust_text(labels, x=x, y=y, target_x=x, target_y=y, objects=avoid, ax=ax, ensure_inside_axes=True,
                    expand=(1.2 + 0.3 * k, 1.4 + 0.4 * k), force_static=(0.1 * (k + 1), 0.2 * (k + 1)),
                    iter_lim=ITERATIONS)  # a step count, not adjustText's default 1 s: the same labels every time
        if not _crowded(fig, ax, labels, x, y):
            return True
    return False


def _crowded(fig: plt.Figure, ax: plt.Axes, labels: list, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether a label covers a data point or another label."""
    fig.canvas.draw()
    boxes = [t.get_window_extent().padded(-0.5) for t in labels]
    pts = ax.transData.transform(np.column_stack([x, y]))
    if any(b.contains(*p) for b in boxes for p in pts):
        return True
    return any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes)))


def _attach(fig: plt.Figure, ax: plt.Axes, labels: list, x: np.ndarray, y: np.ndarray) -> list:
    """Each placed label becomes an annotation of its own point (``xy`` = the point's data position, the text where
    adjustText left it), with a connector from the label's box to the point's centre unless the label sits within
    ``NEAR_PX`` of its point and over ``2 * NEAR_PX`` nearer it than any other point. Returns the annotations."""
    fig.canvas.draw()
    pts = ax.transData.transform(np.column_stack([x, y]))
    out = []
    for i, t in enumerate(labels):
        gaps = [_gap(t.get_window_extent(), p) for p in pts]
        nearest_other = min((g for j, g in enumerate(gaps) if j != i), default=np.inf)
        near = gaps[i] <= NEAR_PX and nearest_other > gaps[i] + 2 * NEAR_PX
        arrow = None if near else dict(arrowstyle="-", color="#555555", lw=0.5, shrinkA=0, shrinkB=0)
        out.append(ax.annotate(t.get_text(), xy=(x[i], y[i]), xytext=t.get_position(), ha=t.get_ha(),
                               va=t.get_va(), fontsize=t.get_fontsize(), color=t.get_color(), arrowprops=arrow,
                               zorder=4))
        t.remove()
    return out


def _gap(box, p: np.ndarray) -> float:
    """Display distance from point ``p`` to the box (0 inside it)."""
    return float(np.hypot(max(box.x0 - p[0], 0, p[0] - box.x1), max(box.y0 - p[1], 0, p[1] - box.y1)))


def draw_entropy_vs_accuracy(stats: pd.DataFrame, corr: pd.DataFrame | None = None,
                             names: Names | None = None) -> plt.Figure:
    """Rule entropy vs accuracy, one panel per ``dataset`` (the paper's figure): per-rule 95% bootstrap intervals on
    accuracy, the least-squares line with its 95% bootstrap band (``sns.regplot``), Pearson r with its interval and p, and rule labels placed by adjustText so that
    none covers another label or a point. ``corr``: rows of correlation.json per dataset."""
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
        if ok.sum() >= 3 and np.ptp(x[ok]) > 0:  # least-squares line and its 95% bootstrap band
            sns.regplot(x=x[ok], y=y[ok], ax=ax, scatter=False, ci=95, n_boot=1000, seed=0, truncate=True,
                        color=MUTED, line_kws=dict(lw=0.8, ls="--", zorder=2))
        lo_y = y[ok] - (err[0][ok] if err is not None else 0)
        hi_y = y[ok] + (err[1][ok] if err is not None else 0)
        pad_x, pad_y = 0.15 * max(np.ptp(x[ok]), 1e-3), 0.08 * max(np.nanmax(hi_y) - np.nanmin(lo_y), 1.0)
        ax.set_xlim(x[ok].min() - pad_x, x[ok].max() + pad_x)
        ax.set_ylim(np.nanmin(lo_y) - pad_y, np.nanmax(hi_y) + pad_y)  # whole intervals, never clipped
        ax.set_title(names.dataset(name) if name else "")
        ax.set_xlabel("Rating entropy $H$ (nats)")
        if i == 0:
            ax.set_ylabel("Rule accuracy (%)")
        objects = []
        row = corr[corr["dataset"] == name] if corr is not None and "dataset" in corr else None
        # correlation.json stores an undefined r (all entropies equal) as null: read it as NaN, draw no annotation
        if row is not None and len(row) and np.isfinite(pd.to_numeric(row["pearson_r"], errors="coerce").iloc[0]):
            r = row.iloc[-1]
            span = [y[ok]] if err is None else [y[ok] + f * (err[1][ok] if f > 0 else err[0][ok])
                                                for f in (-1, -0.5, 0.5, 1)]  # the intervals are in the way too
            cx, cy, ha, va = _emptiest_corner(ax, np.tile(x[ok], len(span) + 1), np.concatenate([y[ok], *span]))
            lo, hi = (pd.to_numeric(r.get(f"pearson_r_ci_{e}"), errors="coerce") for e in ("low", "high"))
            ci = f"[{lo:.2f}, {hi:.2f}] pair bootstrap" if np.isfinite([lo, hi]).all() else "(CI n/a: few pairs)"
            objects.append(ax.text(cx, cy, f"$r$ = {r['pearson_r']:.2f} {ci}\n$p$ = {r['pearson_p']:.2g} over "
                                           f"$K$ = {int(r['n_rules'])} rules",
                                   transform=ax.transAxes, ha=ha, va=va, fontsize=6.5))
        if ok.any():
            _label_rules(fig, ax, x[ok], y[ok], [names.rule(r) for r in d["rule"][ok]], objects, (x[ok], lo_y, hi_y))
    return fig


def _label_rules(fig: plt.Figure, ax: plt.Axes, x: np.ndarray, y: np.ndarray, rules: list[str], others: list,
                 bars: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Label each point with its rule's name; rules on one point (common with coarse labels) share a label. Where
    names do not fit (more than ``MAX_NAMED`` points, a point shared by 3+ rules, or a cluster adjustText cannot
    clear) the points carry numbers and a key under the x label names the rules, numbered in the table's order."""
    at: dict[tuple[float, float], list[int]] = {}
    for k, (xi, yi) in enumerate(zip(x, y)):
        at.setdefault((xi, yi), []).append(k)
    px, py = (np.array(v, float) for v in zip(*at))
    numbered = len(at) > MAX_NAMED or any(len(r) > 2 for r in at.values())
    while True:
        texts = [",".join(str(k + 1) for k in ks) if numbered else "\n".join(rules[k] for k in ks) for ks in at.values()]
        labels = [ax.text(xi, yi, t, fontsize=5.5, color="#333333") for (xi, yi), t in zip(at, texts)]
        if _place_labels(fig, ax, labels, px, py, others, bars) or numbered:
            break
        for artist in labels:  # names collide: numbers instead
            artist.remove()
        numbered = True
    _attach(fig, ax, labels, px, py)
    if numbered:  # the key in two columns; constrained layout makes room for it
        key = [f"{k + 1}  {r}" for k, r in enumerate(rules)]
        half = (len(key) + 1) // 2
        for c, part in enumerate((key[:half], key[half:])):
            ax.annotate("\n".join(part), xy=(0.5 * c, 0), xycoords=("axes fraction", ax.xaxis.label),
                        xytext=(0, -3), textcoords="offset points", va="top", fontsize=5, color="#333333")


def entropy_vs_accuracy(stats: pd.DataFrame, out: Path, corr: pd.DataFrame | None = None, names: Names | None = None,
                        stem: str = "entropy_vs_accuracy") -> list[Path]:
    return save(draw_entropy_vs_accuracy(stats, corr, names), out, stem)


def rating_histogram(ratings: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Tidy bin counts (rule, side, bin_low, bin_high, count) of ratings with columns rule, side, value."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for (rule, side), d in ratings.groupby(["rule", "side"], sort=False):
        counts, _ = np.histogram(d["value"].dropna(), bins=edges)
        rows += [{"rule": rule, "side": side, "bin_low": lo, "bin_high": hi, "count": int(c)}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


def draw_rating_distributions(hist: pd.DataFrame, names: Names | None = None) -> plt.Figure:
    """One panel per rule: its rating histogram, chosen and rejected overlaid. Input: :func:`rating_histogram`."""
    style.apply()
    names = names or Names.from_config()
    rules = list(pd.unique(hist["rule"]))
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
    fig.supxlabel("rating ψ", fontsize=6.5)
    fig.supylabel("responses", fontsize=6.5)
    return fig


def rating_distributions(hist: pd.DataFrame, out: Path, names: Names | None = None,
                         stem: str = "rating_distributions") -> list[Path]:
    return save(draw_rating_distributions(hist, names), out, stem)
