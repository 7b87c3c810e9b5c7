"""Tables a paper can use as they are: the main table (one column per RewardBench Safety subset plus Safety, mean ±
std for seeded methods, the best value per column in bold, a caption saying which rater and backbone produced it)
as LaTeX (booktabs) and Markdown, and the rule statistics as LaTeX. Written by every run that writes the CSVs and
rebuilt by ``make_figures.py`` from run directories alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from encore.cache.artifacts import write_bytes
from encore.data.rewardbench import SAFETY_COUNTS
from encore.report.style import Names, unit_of

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "τ": r"$\tau$", "→": r"$\to$",
          "∞": r"$\infty$", "±": r"$\pm$", "ψ": r"$\psi$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in str(text))


def _cells(table: pd.DataFrame, cols: list[str]) -> tuple[list[list[str]], list[list[bool]]]:
    """Formatted values (one decimal; ``± std`` on Safety for seeded methods) and where each column's best is."""
    shown = table[cols].astype(float).round(1)
    # a judge marked near chance or position-biased (encore.judge) is never bolded, nor counted in a column's best
    marked = table.get("judge_flags", pd.Series("", index=table.index)).fillna("").astype(str).str.len().to_numpy() > 0
    top = shown[~marked].max()
    best = [[bool(np.isfinite(v) and v == top[c] and not bad) for c, v in zip(cols, row)]
            for row, bad in zip(shown.to_numpy(), marked)]
    cells = []
    for (_, r), row in zip(table.iterrows(), shown.to_numpy()):
        out = [f"{v:.1f}" if np.isfinite(v) else "–" for v in row]
        if int(r.get("n_seeds", 1) or 1) > 1 and np.isfinite(r.get("safety_std", np.nan)):
            out[-1] += f" ± {r['safety_std']:.1f}"
        cells.append(out)
    return cells, best


def caption(setup: dict | None, n_seeds: int, safety: bool = True, pairs: dict | None = None) -> str:
    """What the table shows, on which evaluation set (``setup["eval"]``, the set's own name), and who produced it
    (rater, backbone, trainer, data with its number of pairs: ``pairs["train"]``; ``pairs["eval"]``: the evaluation
    set's); ``safety``: the headline is RewardBench's Safety weighting (else plain accuracy, an own set without its
    subsets)."""
    s, n = setup or {}, pairs or {}
    on = f" on {s['eval']}" if s.get("eval") else (" on RewardBench" if safety else "")
    what = (f"Safety accuracy (%){on} per subset and overall (example-weighted 100/100/154/250/136)." if safety
            else f"Accuracy (%){on}.")
    shown = {**s, **({"data": f"{s.get('data') or 'training data'}, {int(n['train']):,} pairs"}
                     if n.get("train") is not None else {})}
    who = "; ".join(f"{k}: {shown[k]}" for k in ("rater", "backbone", "train", "data") if shown.get(k))
    if n.get("eval") is not None:
        who += f"; evaluation pairs: {int(n['eval']):,}"
    seeds = f" Seeded methods: mean ± std over {n_seeds} seeds." if n_seeds > 1 else ""
    return f"{what}{seeds} Bold: best per column." + (f" Produced by encore ({who})." if who else "")


def _stacked(name: str) -> str:
    """A header on two lines, split at the space nearest its middle ("Refusals / (dangerous)"), bottom-aligned, so
    the subset columns are as narrow as their numbers."""
    words = name.split(" ")
    if len(words) < 2:
        return latex_escape(name)
    cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(" ".join(words[i:]))))
    top, bottom = " ".join(words[:cut]), " ".join(words[cut:])
    return rf"\begin{{tabular}}[b]{{@{{}}c@{{}}}}{latex_escape(top)}\\{latex_escape(bottom)}\end{{tabular}}"


def main_table_tex(table: pd.DataFrame, names: Names, setup: dict | None = None, pairs: dict | None = None) -> str:
    subsets = [s for s in SAFETY_COUNTS if s in table.columns]
    cols = [*subsets, "safety"]
    cells, best = _cells(table, cols)
    n_seeds = int(table.get("n_seeds", pd.Series([1])).max())
    headline = "Safety" if subsets else "Accuracy"  # an own evaluation set without RewardBench's subsets
    head = " & ".join(["Method", *[_stacked(names.subset(s)) for s in subsets], headline]) + r" \\"
    rows = []
    for m, vals, b in zip(table["method"], cells, best):
        shown = [rf"\textbf{{{latex_escape(v)}}}" if isbest else latex_escape(v) for v, isbest in zip(vals, b)]
        rows.append(" & ".join([latex_escape(names.method(m)), *shown]) + r" \\")
    spec = "l" + "r" * len(cols)
    # table*: the method column and six numbers (some with ± std) need the full text width of a two-column page
    return "\n".join([r"% requires \usepackage{booktabs}", r"\begin{table*}[t]", r"\centering", r"\small",
                      rf"\caption{{{latex_escape(caption(setup, n_seeds, bool(subsets), pairs))}}}", r"\label{tab:main}",
                      rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head, r"\midrule", *rows, r"\bottomrule",
                      r"\end{tabular}", r"\end{table*}", ""])


def main_table_md(table: pd.DataFrame, names: Names, setup: dict | None = None, pairs: dict | None = None) -> str:
    subsets = [s for s in SAFETY_COUNTS if s in table.columns]
    cols = [*subsets, "safety"]
    cells, best = _cells(table, cols)
    n_seeds = int(table.get("n_seeds", pd.Series([1])).max())
    headline = "Safety" if subsets else "Accuracy"  # an own evaluation set without RewardBench's subsets
    lines = ["| " + " | ".join(["Method", *[names.subset(s) for s in subsets], headline]) + " |",
             "|" + "---|" + "---:|" * len(cols)]
    for m, vals, b in zip(table["method"], cells, best):
        lines.append("| " + " | ".join([names.method(m), *[f"**{v}**" if isbest else v for v, isbest in zip(vals, b)]])
                     + " |")
    return "\n".join([*lines, "", caption(setup, n_seeds, bool(subsets), pairs), ""])


def rule_stats_tex(stats: pd.DataFrame, names: Names, about: str = "") -> str:
    """Rule, entropy, accuracy with its interval and pairs; plus the tie share when ties are common enough to
    matter (1% of pairs or more for some rule: binary or coarse ratings), since the tie policy then moves accuracy.
    ``about``: the study (data, pairs, rater: :func:`encore.report.studies.about_study`), the table's caption."""
    has_ci = {"accuracy_ci_low", "accuracy_ci_high"} <= set(stats)
    ties = "tie_share" in stats and np.nanmax(stats["tie_share"].to_numpy(float), initial=0) >= 0.01
    rows = []
    for _, r in stats.iterrows():
        acc = f"{100 * r['accuracy']:.1f}"
        if has_ci and np.isfinite(r["accuracy_ci_low"]):
            acc += f" [{100 * r['accuracy_ci_low']:.1f}, {100 * r['accuracy_ci_high']:.1f}]"
        cells = [latex_escape(names.rule(r["rule"])), f"{r['entropy']:.3f}", acc, f"{int(r['n_pairs']):,}"]
        rows.append(" & ".join(cells + ([f"{100 * r['tie_share']:.1f}"] if ties else [])) + r" \\")
    head = rf"Rule & $H$ ({unit_of(stats)}) & Accuracy (\%) [95\% CI] & Pairs" + (r" & Ties (\%)" if ties else "") + r" \\"
    wrap = ([r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{Rule statistics: {latex_escape(about)}.}}"],
            [r"\end{table}"]) if about else ([], [])
    return "\n".join([r"% requires \usepackage{booktabs}", *wrap[0], r"\begin{tabular}{lrrr" + ("r" if ties else "") + "}",
                      r"\toprule", head, r"\midrule", *rows, r"\bottomrule", r"\end{tabular}", *wrap[1], ""])


def write_tables(out: Path, names: Names, table: pd.DataFrame | None = None, stats: pd.DataFrame | None = None,
                 setup: dict | None = None, stats_name: str = "rule_stats.tex", about: str = "",
                 pairs: dict | None = None, table_name: str = "main_table") -> list[Path]:
    """``<table_name>.tex``/``.md`` from a main table and ``stats_name`` from rule statistics (captioned ``about``),
    each written atomically under its own name (never renamed afterwards, so writers sharing a folder cannot take
    each other's file)."""
    paths = []
    if table is not None and len(table):
        paths.append(write_bytes(out / f"{table_name}.tex", main_table_tex(table, names, setup, pairs).encode()))
        paths.append(write_bytes(out / f"{table_name}.md", main_table_md(table, names, setup, pairs).encode()))
    if stats is not None and len(stats):
        paths.append(write_bytes(out / stats_name, rule_stats_tex(stats, names, about).encode()))
    return paths
