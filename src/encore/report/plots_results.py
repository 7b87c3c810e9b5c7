"""Results figures in the project style: the main table (Safety with intervals and the five subsets as small
multiples, significance against ENCORE marked), accuracy against τ, and weights as heatmaps (rules x methods,
rules x τ) instead of 20-hue bar charts. Same ``draw_*`` / save split as :mod:`encore.report.plots`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from encore.report import style  # noqa: E402
from encore.data.rewardbench import SAFETY_COUNTS  # noqa: E402
from encore.report.plots import BoundedLocator, save, wrap, wrap_clauses  # noqa: E402
from encore.report.style import ENCORE, MUTED, ONE_COL, TWO_COL, Names  # noqa: E402


def stars(p: float) -> str:
    """Significance against ENCORE: ** p < 0.01, * p < 0.05 (Holm-adjusted where available)."""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def significance_marks(sig: pd.DataFrame | None) -> dict[str, str]:
    if sig is None or sig.empty:
        return {}
    col = "p_holm" if "p_holm" in sig else "p_value"
    return {m: stars(p) for m, p in zip(sig["method"], sig[col]) if np.isfinite(p)}


def draw_main_results(table: pd.DataFrame, sig: pd.DataFrame | None = None, names: Names | None = None,
                      title: str = "RewardBench", about: str = "") -> plt.Figure:
    """Safety per method (point, 95% bootstrap interval; ENCORE highlighted), then each RewardBench Safety subset as
    a small multiple; methods that differ from ENCORE in the paired permutation test are starred. ``title``: the
    evaluation set's own name (:mod:`encore.data.names`); an own set without RewardBench's subsets shows accuracy;
    ``about``: what produced it (evaluation set and pairs, training data and pairs, rater, backbone:
    :func:`encore.report.studies.about_result`), the figure's title across its width."""
    style.apply()
    names = names or Names.from_config()
    t = table.sort_values("safety").reset_index(drop=True)
    subsets = [s for s in SAFETY_COUNTS if s in t.columns]
    marks = significance_marks(sig)
    ratios = [2.2] + [1] * len(subsets)
    fig, axes = plt.subplots(1, 1 + len(subsets), figsize=(TWO_COL, 0.2 * len(t) + 1.0), sharey=True,
                             gridspec_kw={"width_ratios": ratios}, layout="constrained")
    axes = np.atleast_1d(axes)
    y = np.arange(len(t))
    colours = [style.color(m) for m in t["method"]]
    ax = axes[0]
    err = np.vstack([t["safety"] - t["safety_ci_low"], t["safety_ci_high"] - t["safety"]])
    for yi, xi, e0, e1, c in zip(y, t["safety"], err[0], err[1], colours):
        ax.errorbar(xi, yi, xerr=[[e0], [e1]], fmt="o", color=c, ecolor=c, elinewidth=0.8, capsize=1.5, ms=3.5)
    rule_of = t["rule"] if "rule" in t else pd.Series([None] * len(t))  # a method with all weight on one rule
    labels = [names.method(m) + (f" ({names.rule(r)})" if isinstance(r, str) and r else "") + marks.get(m, "")
              for m, r in zip(t["method"], rule_of)]
    lo0, hi0 = ax.get_xlim()  # within 0-100%: room for a whole marker past the ends, no tick beyond them
    pad = 0.03 * (hi0 - lo0)
    ax.set_xlim(max(lo0, -pad), min(hi0, 100.0 + pad))
    ax.xaxis.set_major_locator(BoundedLocator(0.0, 100.0))
    ax.set_yticks(y, labels)
    for label, m in zip(ax.get_yticklabels(), t["method"]):
        if m == "encore":
            label.set_color(ENCORE)
            label.set_fontweight("bold")
    ax.set_xlabel(f"{'Safety' if subsets else 'Accuracy'} (%), 95% CI")
    # with ``about`` across the top, this panel's title is what it shows; else the evaluation set and backbone
    ax.set_title(("Safety, all subsets" if subsets else "Accuracy") if about else wrap(title, 30))
    # the subsets on one shared range, so panels compare at a glance, each point with its own 95% interval
    lo_cols = [f"{s}_ci_low" if f"{s}_ci_low" in t else s for s in subsets]
    hi_cols = [f"{s}_ci_high" if f"{s}_ci_high" in t else s for s in subsets]
    if subsets:
        lo = max(0.0, float(np.nanmin(t[lo_cols].to_numpy(float))) - 5)
        top = min(100.0, float(np.nanmax(t[hi_cols].to_numpy(float))) + 5)
        hi = top + 0.06 * (top - lo)  # room for a whole marker at 100%, never a clipped one
    for a, s, lo_c, hi_c in zip(axes[1:], subsets, lo_cols, hi_cols):
        for yi, xi, e0, e1, c in zip(y, t[s], t[s] - t[lo_c], t[hi_c] - t[s], colours):
            a.errorbar(xi, yi, xerr=[[e0], [e1]], fmt="o", color=c, ecolor=c, elinewidth=0.6, capsize=1, ms=2.5,
                       zorder=3)
        a.set_title(wrap(names.subset(s), 11), fontsize=6.5)
        a.set_xlim(lo, hi)
        a.xaxis.set_major_locator(FixedLocator(three_ticks(lo, top)))
        a.tick_params(axis="y", length=0)
        a.set_xlabel("accuracy (%)", fontsize=6)
    for a in axes:
        a.grid(axis="y", color="#E5E5E5", lw=0.5)
        a.set_axisbelow(True)
    if any(marks.values()):
        fig.supxlabel("* p < 0.05, ** p < 0.01: differs from ENCORE (paired permutation test, Holm-adjusted)",
                      fontsize=6, x=0.99, ha="right")
    if about:
        fig.suptitle(wrap_clauses(about[:1].upper() + about[1:], 120), fontsize=7.5)
    return fig


NICE_STEPS = (1, 2, 5, 10, 20, 25, 30, 40, 50)


def three_ticks(lo: float, top: float) -> list[float]:
    """Three evenly spaced round ticks spread over as much of [lo, top] as they can (fewer only on a range under 2):
    the highest ``top`` rounded down to a unit (10, 5 or 1, by the range), the step the largest multiple of that
    unit that keeps the lowest tick at or above ``lo``. A narrow panel reads its range without crowding."""
    unit = 10 if top - lo >= 30 else 5 if top - lo >= 15 else 1
    anchor = np.floor(top / unit + 1e-9) * unit
    fits = [s for s in NICE_STEPS if s % unit == 0 and anchor - 2 * s >= lo - 1e-9]
    step = max(fits or [unit])
    return [float(v) for v in anchor - step * np.arange(3)[::-1] if v >= lo - 1e-9]


def main_results(table: pd.DataFrame, out: Path, sig: pd.DataFrame | None = None, names: Names | None = None,
                 stem: str = "main_results", title: str = "RewardBench", about: str = "") -> list[Path]:
    return save(draw_main_results(table, sig, names, title, about), out, stem)


def draw_tau_curve(sweep: pd.DataFrame, uniform: float | None = None, single: float | None = None,
                   zero: float | None = None, paper_tau: float = 2.0, rules: dict[str, str] | None = None,
                   names: Names | None = None, title: str = "", metric: str = "Safety") -> plt.Figure:
    """Safety vs τ on a log axis (decade ticks), its 95% band, the τ→∞ (uniform), τ→0 (lowest-entropy rule) and
    best-single-rule references, each one-rule reference naming its rule (``rules``: ``{"single": key, "zero":
    key}``), and the paper's τ = 2 marked; the legend sits below the axes, off the data. ``title``: what was swept
    (:func:`encore.report.studies.about_result`); ``metric``: "Safety" on RewardBench's Safety subsets, else
    "Accuracy" (the y label says which)."""
    style.apply()
    names, rules = names or Names.from_config(), rules or {}

    def named(label: str, which: str) -> str:
        return f"{label}\n({names.rule(rules[which])})" if rules.get(which) else label

    s = sweep.sort_values("tau")
    fig, ax = plt.subplots(figsize=(ONE_COL, 2.9), layout="constrained")
    ax.plot(s["tau"], s["safety"], marker="o", ms=3, color=ENCORE, label="ENCORE", zorder=3)
    if {"safety_ci_low", "safety_ci_high"} <= set(s):
        ax.fill_between(s["tau"], s["safety_ci_low"], s["safety_ci_high"], color=ENCORE, alpha=0.15, lw=0,
                        label="95% CI")
    for value, colour, ls, label in ((uniform, MUTED, "--", "Uniform (τ→∞)"),
                                     (zero, style.OKABE_ITO[2], "-.", named("Lowest-entropy rule (τ→0)", "zero")),
                                     (single, style.OKABE_ITO[1], ":", named("Best single rule", "single"))):
        if value is not None:
            ax.axhline(value, color=colour, ls=ls, lw=0.9, label=label)
    ax.axvline(paper_tau, color="black", lw=0.5, ls=(0, (1, 2)), label=f"paper's τ = {paper_tau:g}")
    ax.set_xscale("log")
    lo, hi = float(s["tau"].min()), float(s["tau"].max())
    decades = [10.0 ** k for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)]
    ax.xaxis.set_major_locator(FixedLocator([d for d in decades if lo / 1.01 <= d <= hi * 1.01] or decades))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(lo / 1.5, hi * 1.5)
    ax.set_xlabel("temperature τ (log scale)")
    ax.set_ylabel(f"{metric} (%)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    if title:
        ax.set_title(wrap_clauses(f"ENCORE over τ, {title}", 52))
    return fig


def tau_curve(sweep: pd.DataFrame, out: Path, uniform: float | None = None, single: float | None = None,
              zero: float | None = None, stem: str = "accuracy_vs_tau", rules: dict[str, str] | None = None,
              names: Names | None = None, title: str = "", metric: str = "Safety") -> list[Path]:
    return save(draw_tau_curve(sweep, uniform, single, zero, rules=rules, names=names, title=title, metric=metric),
                out, stem)


MAX_ROWS = 40  # rules shown in a weights heatmap; with more, those with the largest weights (said on the figure)
MAX_ANNOTATED = 24  # columns whose cells still have room for their values


def cell_text(v: float) -> str:
    """A weight as its cell shows it: two decimals, never "-0.00"."""
    text = f"{v:.2f}" if np.isfinite(v) else ""
    return "0.00" if text == "-0.00" else text


def draw_weight_heatmap(weights: pd.DataFrame, by: str, names: Names | None = None, title: str = "") -> plt.Figure:
    """Weights as a rules x ``by`` heatmap with each cell's value on it (``sns.heatmap``; ``by``: ``method`` or
    ``tau``); long-form input with columns ``by``, rule, weight (seeds averaged). A column with all weight on one
    rule (single rule) is drawn outside the colour scale, its rule's cell grey, so that the scale spans the composed
    weights and does not saturate, and keyed below the axes; at most ``MAX_ROWS`` rules (those with the largest
    weights) are shown. ``title``: what produced the weights (:func:`encore.report.studies.about_result`)."""
    style.apply()
    names = names or Names.from_config()
    wide = weights.groupby([by, "rule"], sort=False)["weight"].mean().unstack(by)
    wide = wide.reindex(index=list(pd.unique(weights["rule"])))
    if by == "tau":
        wide = wide.reindex(columns=sorted(wide.columns))
    n_rules = len(wide)
    if n_rules > MAX_ROWS:  # the rules that carry weight, in their own order
        wide = wide.loc[wide.abs().max(axis=1).nlargest(MAX_ROWS).index.sort_values(key=wide.index.get_indexer)]
    cols = [f"{c:g}" for c in wide.columns] if by == "tau" else [wrap(names.method(c), 12) for c in wide.columns]
    fig, ax = plt.subplots(figsize=(TWO_COL if len(cols) > 6 else ONE_COL + 1.2, 0.22 * len(wide) + 1.3),
                           layout="constrained")
    values = wide.to_numpy(float)
    one_hot = np.array([np.count_nonzero(np.nan_to_num(c)) == 1 for c in values.T])  # (C,)
    rest = values[:, ~one_hot] if (~one_hot).any() else values
    if np.nanmin(rest) < 0:  # signed weights (BT-optimised): a diverging map centred on 0
        bound = float(np.nanmax(np.abs(rest))) or 1.0
        scale = dict(cmap="PuOr_r", center=0.0, vmin=-bound, vmax=bound)
    else:
        scale = dict(cmap="viridis", vmin=0.0, vmax=float(np.nanmax(rest)) or 1.0)
    style.check_glyphs([names.rule(r) for r in wide.index])
    frame = pd.DataFrame(values, index=[names.rule(r) for r in wide.index], columns=cols)
    text = np.vectorize(cell_text)(values) if len(cols) <= MAX_ANNOTATED else False
    common = dict(ax=ax, fmt="", annot=text, annot_kws={"fontsize": 4.5}, xticklabels=True, yticklabels=True)
    sns.heatmap(frame, mask=np.broadcast_to(one_hot, values.shape),
                cbar_kws={"label": "ENCORE weight" if by == "tau" else "weight", "shrink": 0.9}, **common, **scale)
    if one_hot.any():  # the one rule in grey, the rest white: values, not colours of the scale
        sns.heatmap(frame.where(frame == 0, 1.0), mask=np.broadcast_to(~one_hot, values.shape), cbar=False,
                    cmap=ListedColormap(["#FFFFFF", "#D0D0D0"]), vmin=0, vmax=1, **common)
    ax.tick_params(axis="x", labelrotation=90 if len(cols) > 10 else 0, labelsize=6 if by == "tau" else 5.5)
    ax.tick_params(axis="both", length=0)
    ax.tick_params(axis="y", labelrotation=0)
    if by == "method":
        for label, m in zip(ax.get_xticklabels(), wide.columns):
            if m == "encore":
                label.set_color(ENCORE)
                label.set_fontweight("bold")
    xlabel = "temperature τ" if by == "tau" else ""
    if n_rules > len(wide):
        xlabel = f"{xlabel}\n({len(wide)} of {n_rules} rules: those with the largest weights)".strip()
    ax.set_xlabel(xlabel)
    if one_hot.any():  # the grey cells are a value (all weight on one rule), not a colour of the scale: say so
        fig.legend([Patch(facecolor="#D0D0D0", edgecolor="#7F7F7F", lw=0.4),
                    Patch(facecolor="#FFFFFF", edgecolor="#7F7F7F", lw=0.4)],
                   ["weight 1: all on this rule (outside the colour scale)", "weight 0"], loc="outside lower center",
                   ncols=2, handlelength=1.2)
    if title:
        fig.suptitle(wrap_clauses(f"{'ENCORE weights over τ' if by == 'tau' else 'Weights per rule'}: {title}",
                          120 if len(cols) > 6 else 70), fontsize=7.5)
    return fig


def weight_heatmap(weights: pd.DataFrame, out: Path, by: str, names: Names | None = None,
                   stem: str = "weights", title: str = "") -> list[Path]:
    return save(draw_weight_heatmap(weights, by, names, title), out, stem)
