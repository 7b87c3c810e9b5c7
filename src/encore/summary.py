"""The few plain lines a run ends with: what it found, with the paper's number beside ours for a paper experiment.

    study: entropy vs accuracy over 10 rules and 2308 pairs: Pearson r = +0.31 (95% CI -0.07 to +0.59), p = 0.39; ...
    safety: ENCORE 69.1 (95% CI 61.2 to 76.6) vs best baseline Single-head BT 97.4 (...): -28.3 points, Holm-adjusted p = ...
    paper: ENCORE 88.5, Gating (MoE) 86.0, Uniform 85.5  (ours: ENCORE ..., Gating (MoE) ..., Uniform ...)

The paper's numbers come from the experiment file (``paper:`` in ``conf/experiment/paper_*.yaml``), keyed by
dataset for the study and by method for the main table; they are quoted, never computed.
"""

from __future__ import annotations

from typing import Any, Mapping

from encore.report.style import Names


def _num(x: Any, fmt: str = "+.2f") -> str:
    return "n/a" if x is None else format(float(x), fmt)


def _ci(row: Mapping[str, Any], key: str, fmt: str) -> str:
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return "" if lo is None or hi is None else f" (95% CI {_num(lo, fmt)} to {_num(hi, fmt)})"


def study_line(corr: Mapping[str, Any], dataset: str, paper: Mapping[str, Any] | None) -> str:
    """Entropy–accuracy correlation with its interval and p-value; the paper's r for this dataset beside it."""
    line = (f"study: entropy vs accuracy over {corr.get('n_rules')} rules and {corr.get('n_pairs')} pairs: Pearson "
            f"r = {_num(corr.get('pearson_r'))}{_ci(corr, 'pearson_r', '+.2f')}, p = "
            f"{_num(corr.get('pearson_p'), '.2g')}; Spearman rho = {_num(corr.get('spearman_rho'))}")
    r = (paper or {}).get("pearson_r", {}).get(dataset) if paper else None
    return line + (f"; paper: r = {r}" if r is not None else "")


def safety_lines(table: list[Mapping[str, Any]], sig: list[Mapping[str, Any]], names: Names,
                 paper: Mapping[str, Any] | None, reference: str = "encore", label: str = "safety") -> list[str]:
    """ENCORE's headline score (``label``: ``safety on RewardBench``, ``accuracy on pairs``) against the best other
    method, the paired difference and its Holm-adjusted p; then the paper's scores for the methods it reports."""
    rows = {str(r["method"]): r for r in table}
    if reference not in rows:
        best = max(rows.values(), key=lambda r: r["safety"]) if rows else None
        return [] if best is None else [f"{label}: best {names.method(best['method'])} {best['safety']:.1f}"
                                        f"{_ci(best, 'safety', '.1f')}"]
    ref = rows[reference]
    line = f"{label}: {names.method(reference)} {ref['safety']:.1f}{_ci(ref, 'safety', '.1f')}"
    others = [r for m, r in rows.items() if m != reference and r.get("safety") is not None]
    if others:
        best = max(others, key=lambda r: r["safety"])
        s = next((x for x in sig if x.get("method") == best["method"]), {})
        line += f" vs best baseline {names.method(best['method'])} {best['safety']:.1f}{_ci(best, 'safety', '.1f')}"
        if s:
            line += f": {s['reference_minus_method']:+.1f} points, Holm-adjusted p = {_num(s.get('p_holm'), '.2g')}"
    lines = [line]
    quoted = (paper or {}).get("safety") or {}
    if quoted:
        ours = ", ".join(f"{names.method(m)} {rows[m]['safety']:.1f}" for m in quoted if m in rows)
        lines.append("paper: " + ", ".join(f"{names.method(m)} {v}" for m, v in quoted.items())
                     + (f"  (ours: {ours})" if ours else ""))
    return lines


def rating_line(rating: Mapping[str, Any]) -> str:
    """Where the ratings came from: the cache and the rater, or a source that holds them (a ratings file, a
    dataset's label columns: ``rater=file`` / ``rater=columns``), with what it held and what is missing."""
    if rating.get("source"):
        found = f"{rating['n_given']} read from " if "n_given" in rating else "from "
        found += str(rating["source"])
        extra = [f"{rating[k]} {what}" for k, what in (("file_rows", "rows in the file"),
                                                       ("file_ratings_unused", "match no pair"),
                                                       ("pairs_without_ratings", "pairs not in it")) if k in rating]
        return f"ratings: {found}{' (' + ', '.join(extra) + ')' if extra else ''}, {rating.get('n_missing', 0)} missing"
    counts = (f"{rating['n_cached']} from the cache, {rating['n_new']} new, "
              if "n_new" in rating and "n_cached" in rating else "")
    return f"ratings: {counts}{rating.get('n_missing', 0)} missing"


def summary_text(metrics: Mapping[str, Any], names: Names, paper: Mapping[str, Any] | None = None) -> str:
    """The run's findings as a few plain lines (empty stages say nothing): the data, rater, backbone and evaluation
    set by name, where the ratings came from, the study, the headline score."""
    setup = metrics.get("setup") or {}
    head = (f"{metrics.get('job')} on {names.dataset(str(metrics.get('dataset')))} ({metrics.get('train_pairs')} "
            f"pairs), rater {setup.get('rater')}, backbone {setup.get('backbone')}")
    if metrics.get("eval_set"):
        head += f"; evaluation set {metrics['eval_set']} ({metrics.get('eval_pairs')} pairs)"
    lines = [head]
    if metrics.get("rating"):
        lines.append(rating_line(metrics["rating"]))
    if metrics.get("correlation"):
        lines.append(study_line(metrics["correlation"], str(metrics.get("dataset")), paper))
    if metrics.get("main_table"):
        label = (f"{str(metrics.get('eval_metric', 'safety')).lower()} on {metrics['eval_set']}"
                 if metrics.get("eval_set") else "safety")
        lines += safety_lines(metrics["main_table"], metrics.get("significance") or [], names, paper, label=label)
    return "\n".join(lines)
