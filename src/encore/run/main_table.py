"""The evaluation stage: every composition method on the evaluation pairs, written as the run's main table
(``main_table.csv`` and its LaTeX/Markdown forms), the weights (method × rule, and per seed), the paired
significance tests against ``stats.reference`` and each pair's correctness per method."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from encore.cache.artifacts import write_frame
from encore.data.names import set_name
from encore.evaluate import compare_to, evaluate_rewards, evaluate_weights
from encore.methods import FitContext
from encore.report.style import Names
from encore.report.tables import write_tables


def dataset_name(data_cfg: DictConfig) -> str:
    """A short label for the training data of a run (figure panels group runs by it): :func:`set_name`."""
    return set_name(data_cfg)


def run_setup(cfg: DictConfig) -> dict[str, str]:
    """Which rater, backbone, trainer, data and evaluation set produced a run (captions of its tables)."""
    target = lambda node: str(node.get("_target_", "")).rsplit(".", 1)[-1]  # noqa: E731
    rater = (cfg.rater.get("model") or cfg.rater.get("name")  # a model, or a ratings source's name or file
             or (f"ratings file {Path(str(cfg.rater.path)).name}" if cfg.rater.get("path") else target(cfg.rater)))
    return {"rater": str(rater), "backbone": str(cfg.model.get("name_or_path")), "train": target(cfg.train),
            "data": dataset_name(cfg.data), **({"eval": set_name(cfg.eval)} if cfg.get("eval") else {})}


def _params(method: Any) -> str:
    return json.dumps({f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.name != "name"},
                      sort_keys=True, default=str)


def _fitted_on(method: Any, ctx: FitContext) -> dict[str, str]:
    """``fitted_on``: what a fitted composition (BT-optimised weights, the gate) learned from, in words."""
    return {"fitted_on": method.fitted_on(ctx)} if hasattr(method, "fitted_on") else {}


def stage_evaluate(cfg: DictConfig, methods: list[Any], ctx: FitContext,
                   run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    eval_pairs, scores = ctx.eval_pairs, ctx.eval_scores
    subsets = eval_pairs["subset"].to_numpy()
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method: two methods share a name in {names}; give each a distinct method.<key>.name")
    rows, weights, correct = [], [], {}
    for m in methods:
        if hasattr(m, "rewards"):  # scores pairs itself (single-head BT, gating, judge): no fixed weights
            rewards, extra = m.rewards(ctx)
            row, correct[m.name] = evaluate_rewards(m.name, rewards, subsets, n_boot=cfg.stats.n_boot,
                                                    seed=cfg.stats.seed, tie_credit=getattr(m, "tie_credit", 0.0))
            mean_w = extra.pop("mean_weights", None)  # a gate's weights, averaged over evaluation prompts
            if mean_w is not None:
                weights += [{"method": m.name, "seed": 0, "rule": r, "weight": float(x)} for r, x in zip(ctx.rules, mean_w)]
            if hasattr(m, "flags"):  # a judge near chance or with a position preference: marked, never bolded
                row["judge_flags"] = m.flags(extra, row)
            rows.append({**row, **extra, **_fitted_on(m, ctx), "params": _params(m)})
            continue
        w = np.atleast_2d(m.weights(ctx))
        row, correct[m.name] = evaluate_weights(m.name, w, scores, subsets, n_boot=cfg.stats.n_boot, seed=cfg.stats.seed)
        row.update(_fitted_on(m, ctx), params=_params(m))
        if len(w) == 1 and np.count_nonzero(w[0]) == 1:  # all weight on one rule: name it (figures, tables)
            row["rule"] = ctx.rules[int(np.flatnonzero(w[0])[0])]
        rows.append(row)
        for s, ws in enumerate(w):
            weights += [{"method": m.name, "seed": s, "rule": r, "weight": float(x)} for r, x in zip(ctx.rules, ws)]
    table = pd.DataFrame(rows)
    weights_long = pd.DataFrame(weights, columns=["method", "seed", "rule", "weight"])
    ref = cfg.stats.reference if cfg.stats.reference in correct else None
    sig = compare_to(ref, correct, subsets, n_perm=cfg.stats.n_perm, seed=cfg.stats.seed) if ref else pd.DataFrame()
    wide = (weights_long.groupby(["method", "rule"], sort=False)["weight"].mean().unstack("rule")
            .reindex(columns=ctx.rules).reset_index())  # method × rule, seeds averaged
    write_frame(run_dir / "main_table.csv", table)
    write_frame(run_dir / "weights.csv", wide)
    write_frame(run_dir / "weights_long.csv", weights_long)
    write_frame(run_dir / "significance.csv", sig)
    write_tables(run_dir, Names.from_run(run_dir), table=table, setup=run_setup(cfg),
                 pairs={"train": len(ctx.train_pairs), "eval": len(eval_pairs)})  # the caption names both
    write_frame(run_dir / "eval_correct.csv", pd.DataFrame({"pair_id": eval_pairs["pair_id"], "subset": subsets,
                                                            **{f"correct_{k}": v for k, v in correct.items()}}))
    return table, wide, sig
