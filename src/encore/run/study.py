"""The study stage: per-rule rating entropy and accuracy, their correlation with bootstrap intervals, and how much
the tie policy moves them (``rule_stats.csv``, ``correlation.json``, ``rule_stats.tex``).

Ties (ψ_k(chosen) = ψ_k(rejected)) are rare with an LLM's P(Yes) but common with binary or coarse labels (a harm
flag, a 0-4 score): with a binary label a rule's ratings occupy two bins and most pairs tie. So every run also
reports each rule's tie share and its accuracy under each policy (``wrong`` counts a tie as a miss, ``half`` as ½,
``drop`` leaves it out), and the correlation under each, whichever ``study.ties`` the run used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from encore.cache.artifacts import write_frame, write_json
from encore.entropy import (TIES, bins_used, binning_robustness, correlation, entropy_unit, rating_entropy,
                            rule_accuracy, tie_share)
from encore.rating.engine import Ratings
from encore.stats import bootstrap_correlation_ci, bootstrap_rule_accuracy_ci
from encore.report.style import Names
from encore.report.studies import about_study
from encore.report.tables import write_tables
from encore.run.main_table import dataset_name, run_setup

log = logging.getLogger(__name__)
TIE_WARNING = 0.2  # a rule tying on more than this share of pairs gets the tie policy's effect in the log
ROBUSTNESS_BINS = (8, 10, 12)  # the study's r and the rules' entropy ranking under a few bin counts besides study.bins
# The interval on r and its p-value answer different questions, so correlation.json says which each is.
CI_BASIS = "pair bootstrap: 95% percentile interval over stats.n_boot resamples of the pairs, the rules fixed"
P_BASIS = "over the K rules: two-sided test of r = 0 with the rules as the sample (scipy.stats.pearsonr, spearmanr)"


def log_base(study: DictConfig) -> float:
    """``study.log_base`` as a number (``e``: nats)."""
    return float(np.e) if str(study.log_base) == "e" else float(study.log_base)


def stage_study(cfg: DictConfig, ratings: Ratings, run_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Per-rule entropy and accuracy, their correlation with a bootstrap interval, and the tie policy's effect."""
    st = cfg.study
    flat = ratings.values.reshape(-1, len(ratings.rules))  # (2N, K) every rated response
    H = rating_entropy(flat, int(st.bins), log_base(st))
    by_ties = {t: rule_accuracy(ratings.chosen, ratings.rejected, t) for t in TIES}  # (accuracy, pairs used)
    acc, n_used = by_ties[st.ties]
    if not np.isfinite(acc).any():
        raise RuntimeError(f"study: no rule has a pair rated on both sides ({ratings.n_missing} ratings missing: "
                           f"{ratings.missing_by_reason()}); the entropy-accuracy table would be all NaN. Fix the "
                           "rating stage first (see rating_report.json)")
    lo, hi, undefined = bootstrap_rule_accuracy_ci(ratings.chosen, ratings.rejected, st.ties, n_boot=cfg.stats.n_boot,
                                                   seed=cfg.stats.seed, with_undefined=True)
    ties = tie_share(ratings.chosen, ratings.rejected)
    stats = pd.DataFrame({"rule": ratings.rules, "entropy": H, "accuracy": acc, "accuracy_ci_low": lo,
                          "accuracy_ci_high": hi, "accuracy_ci_n_undefined": undefined, "n_pairs": n_used,
                          "bins_used": bins_used(flat, int(st.bins)),
                          "entropy_unit": entropy_unit(st.log_base),
                          "n_missing": np.isnan(ratings.values).sum(axis=(0, 1)),
                          "mean_rating": np.nanmean(ratings.values, axis=(0, 1)), "tie_share": ties,
                          **{f"accuracy_ties_{t}": a for t, (a, _) in by_ties.items()}})
    corr = correlation(H, acc)
    corr.update(bootstrap_correlation_ci(ratings.chosen, ratings.rejected, int(st.bins), st.ties,
                                         n_boot=cfg.stats.n_boot, seed=cfg.stats.seed))
    corr.update(ci_basis=CI_BASIS, p_basis=P_BASIS)  # what each uncertainty measure is (docs/experiments.md)
    corr.update(bins=st.bins, ties=st.ties, log_base=str(st.log_base), n_pairs=len(ratings.pair_ids),
                max_tie_share=float(np.nanmax(ties)) if np.isfinite(ties).any() else None,
                by_ties={t: {k: correlation(H, a)[k] for k in ("pearson_r", "spearman_rho")} for t, (a, _) in by_ties.items()})
    corr["binning"] = binning_robustness(flat, acc, int(st.bins), ROBUSTNESS_BINS)
    corr["binning"]["warning"] = bins_warning(stats, int(st.bins))
    if corr["binning"]["warning"]:
        log.warning("%s", corr["binning"]["warning"])
    if np.nanmax(ties, initial=0) > TIE_WARNING:
        heavy = [r for r, s in zip(ratings.rules, ties) if s > TIE_WARNING]
        log.warning("%d rule(s) tie on more than %.0f%% of pairs (up to %.0f%%: binary or coarse ratings): %s. Under "
                    "study.ties=%s the correlation is r=%.3f; wrong / half / drop give %s. See tie_share and "
                    "accuracy_ties_* in rule_stats.csv", len(heavy), 100 * TIE_WARNING, 100 * np.nanmax(ties),
                    heavy[:5], st.ties, corr["pearson_r"],
                    " / ".join(f"{corr['by_ties'][t]['pearson_r']:.3f}" for t in TIES))
    write_frame(run_dir / "rule_stats.csv", stats)
    write_json(run_dir / "correlation.json", corr)
    names = Names.from_run(run_dir)  # the caption: data, pairs and rater, as the rebuilt table says them
    about = about_study({"train_pairs": len(ratings.pair_ids), "setup": run_setup(cfg)},
                        names.dataset(dataset_name(cfg.data)))
    write_tables(run_dir, names, stats=stats, about=about)
    return stats, corr


def bins_warning(stats: pd.DataFrame, bins: int) -> str | None:
    """A warning naming the rules whose ratings use fewer than half of the ``bins`` bins (their entropy then says as
    much about where the bin edges fall as about the rater; ``binning`` in correlation.json shows how r moves)."""
    few = stats[stats["bins_used"] < bins / 2]
    if few.empty:
        return None
    return (f"{len(few)} of {len(stats)} rules use fewer than half of the {bins} entropy bins (as few as "
            f"{int(few['bins_used'].min())}: {', '.join(map(str, few['rule'][:5]))}): their entropy may be a binning "
            "artefact; see binning in correlation.json for r under other bin counts")
