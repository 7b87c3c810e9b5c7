"""The few plain lines a run ends with: what it found, with the paper's number beside ours for a paper experiment.

    study: entropy vs accuracy over 10 rules and 2308 pairs: Pearson r = +0.31 (95% CI -0.07 to +0.59, pair
        bootstrap, rules fixed), p = 0.39 over K = 10 rules; ...
    safety: ENCORE 69.1 (95% CI 61.2 to 76.6) vs best baseline Single-head BT 97.4 (...): -28.3 points, Holm-adjusted p = ...
    paper: ENCORE 88.5, Gating (MoE) 86.0, Uniform 85.5 (the paper's own rules; this run's rules differ)  (ours: ...)

The paper's numbers come from the experiment file (``paper:`` in ``conf/experiment/paper_*.yaml``), keyed by
dataset for the study and by method for the main table; they are quoted, never computed, and always said to be on
the paper's own rules (its rule texts are not available; ours differ).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from encore.report.style import Names

# The paper's rule texts are not published with it; every rule set here (safety10 included) was written for this
# project, so a quoted number is never a result on our rules.
PAPER_RULES = "(the paper's own rules; this run's rules differ)"


def _num(x: Any, fmt: str = "+.2f") -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else format(float(x), fmt)


def _finite(*xs: Any) -> bool:
    return all(x is not None and math.isfinite(float(x)) for x in xs)


def _ci(row: Mapping[str, Any], key: str, fmt: str, what: str = "", why: str = "too few pairs") -> str:
    """`` (95% CI lo to hi[, what])``; an interval the data could not support (NaN, null) is said to be unavailable,
    and ``why``."""
    if f"{key}_ci_low" not in row:
        return ""
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if not _finite(lo, hi):
        return f" (95% CI unavailable: {why})"
    return f" (95% CI {_num(lo, fmt)} to {_num(hi, fmt)}{', ' + what if what else ''})"


def binning_line(corr: Mapping[str, Any]) -> str | None:
    """How the study was measured: the bins the ratings use and r (and the rules' entropy ranking) under a few bin
    counts, with the warning where a rule uses fewer than half the bins."""
    b = corr.get("binning")
    if not b:
        return None
    run = str(b["bins"])
    by = dict(sorted(b["by_bins"].items(), key=lambda kv: int(kv[0])))  # a JSON round trip sorts keys as text
    used = (f"{b['bins_used_min']}" if b["bins_used_min"] == b["bins_used_max"]
            else f"{b['bins_used_min']}-{b['bins_used_max']}")
    line = (f"entropy bins: rules use {used} of {run} bins; Pearson r = "
            + " / ".join(_num(v["pearson_r"]) for v in by.values()) + " at " + " / ".join(by) + " bins; rule ranking "
            f"by entropy against {run} bins: Spearman "
            + ", ".join(f"{_num(v['ranking_vs_run_bins'])} ({k})" for k, v in by.items() if k != run))
    return line + (f". WARNING: {b['warning']}" if b.get("warning") else "")


def _marked(row: Mapping[str, Any]) -> bool:
    """A judge near chance or with a position preference (``judge_flags``, :mod:`encore.judge`)."""
    return isinstance(row.get("judge_flags"), str) and bool(row["judge_flags"])


def _resampling(row: Mapping[str, Any]) -> str:
    """How a headline interval's replicates were drawn, in two words (``safety_ci_basis``), and any undefined ones."""
    basis = str(row.get("safety_ci_basis") or "")
    what = "stratified by subset" if basis.startswith("bootstrap stratified") else "pairs resampled" if basis else ""
    bad = row.get("safety_ci_n_undefined")
    if _finite(bad or 0) and (bad or 0) > 0:
        what += f"; {int(bad)} undefined replicate(s) left out"
    return what


def study_line(corr: Mapping[str, Any], dataset: str, paper: Mapping[str, Any] | None) -> str:
    """Entropy–accuracy correlation with its interval and p-value, each saying what it is: the interval resamples
    pairs with the rules fixed, the p-value treats the K rules as the sample. When one excludes 0 and the other does
    not, the line says why they may disagree. The paper's r for this dataset beside it, with the rules it used."""
    k, r, p = corr.get("n_rules"), corr.get("pearson_r"), corr.get("pearson_p")
    why = (f"a correlation over rules needs at least 3, this run has K = {k}; fix: a rule set with more rules, "
           "rules=..." if k is not None and int(k) < 3 else "too few pairs")
    line = (f"study: entropy vs accuracy over {k} rules and {corr.get('n_pairs')} pairs: Pearson "
            f"r = {_num(r)}{_ci(corr, 'pearson_r', '+.2f', 'pair bootstrap, rules fixed', why)}, p = "
            f"{_num(p, '.2g')} over K = {k} rules")
    lo, hi = corr.get("pearson_r_ci_low"), corr.get("pearson_r_ci_high")
    if _finite(lo, hi, p) and (lo > 0 or hi < 0) != (p < 0.05):
        line += (" (they differ because they ask different things: the interval, how r moves with other pairs for "
                 f"these rules; p, whether {k} rules are enough to tell r from 0)")
    line += f"; Spearman rho = {_num(corr.get('spearman_rho'))}"
    bad = {k: corr.get(f"{k}_n_undefined") or 0 for k in ("pearson_r", "spearman_rho")}
    if any(bad.values()):  # counted, never dropped silently
        line += (f" ({bad['pearson_r']} of {corr.get('n_boot')} bootstrap replicates left r undefined, "
                 f"{bad['spearman_rho']} rho; left out of the intervals)")
    r = (paper or {}).get("pearson_r", {}).get(dataset) if paper else None
    return line + (f"; paper: r = {r} {PAPER_RULES}" if r is not None else "")


def safety_lines(table: list[Mapping[str, Any]], sig: list[Mapping[str, Any]], names: Names,
                 paper: Mapping[str, Any] | None, reference: str = "encore", label: str = "safety") -> list[str]:
    """ENCORE's headline score (``label``: ``safety on RewardBench``, ``accuracy on pairs``) against the best other
    method, the paired difference and its Holm-adjusted p; then the paper's scores for the methods it reports."""
    rows = {str(r["method"]): r for r in table}
    if reference not in rows:
        fair = [r for r in rows.values() if not _marked(r)] or list(rows.values())
        best = max(fair, key=lambda r: r["safety"]) if fair else None
        return [] if best is None else [f"{label}: best {names.method(best['method'])} {best['safety']:.1f}"
                                        f"{_ci(best, 'safety', '.1f', _resampling(best))}"]
    ref = rows[reference]
    line = f"{label}: {names.method(reference)} {ref['safety']:.1f}{_ci(ref, 'safety', '.1f', _resampling(ref))}"
    others = [r for m, r in rows.items() if m != reference and r.get("safety") is not None and not _marked(r)]
    if others:
        best = max(others, key=lambda r: r["safety"])
        s = next((x for x in sig if x.get("method") == best["method"]), {})
        line += (f" vs best baseline {names.method(best['method'])} {best['safety']:.1f}"
                 f"{_ci(best, 'safety', '.1f', _resampling(best))}")
        if s:
            line += f": {s['reference_minus_method']:+.1f} points, Holm-adjusted p = {_num(s.get('p_holm'), '.2g')}"
    lines = [line] + [f"judge: {names.method(m)} {r['judge_flags']}; never counted as best" for m, r in rows.items()
                      if _marked(r)]
    quoted = (paper or {}).get("safety") or {}
    if quoted:
        ours = ", ".join(f"{names.method(m)} {rows[m]['safety']:.1f}" for m in quoted if m in rows)
        lines.append("paper: " + ", ".join(f"{names.method(m)} {v}" for m, v in quoted.items())
                     + f" {PAPER_RULES}" + (f"  (ours: {ours})" if ours else ""))
    return lines


def fitted_line(table: list[Mapping[str, Any]], names: Names) -> str | None:
    """What each fitted composition (BT-optimised weights, the gate) was fitted on: held-out or cross-fitted head
    scores by default, in-sample only on request (``method.fit_on``)."""
    fitted = [f"{names.method(str(r['method']))} on {r['fitted_on']}" for r in table
              if isinstance(r.get("fitted_on"), str)]  # methods fitted on nothing have NaN / null there
    return "fitted: " + "; ".join(fitted) if fitted else None


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
        lines += [x for x in [binning_line(metrics["correlation"])] if x]
    if metrics.get("main_table"):
        label = (f"{str(metrics.get('eval_metric', 'safety')).lower()} on {metrics['eval_set']}"
                 if metrics.get("eval_set") else "safety")
        lines += [x for x in [fitted_line(metrics["main_table"], names)] if x]  # what the baselines below learned from
        lines += safety_lines(metrics["main_table"], metrics.get("significance") or [], names, paper, label=label)
    return "\n".join(lines)
