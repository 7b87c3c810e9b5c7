"""The stages wired together: plain ``run_*(cfg, run_dir) -> dict`` functions that the Hydra runners in
``experiments/`` wrap and that tests call directly.

    pairs ──> ratings ──> study (H_k, accuracy, r)
                 └──> multi-head RM ──> head scores ──> weights ──> evaluation ──> tables, figures

Each stage reads the cache of the one before (keyed by content hash under ``cfg.cache_dir``), so a later stage or a
τ sweep never recomputes a rater or a backbone pass.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from accelerate import PartialState
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from encore.cache.artifacts import write_bytes, write_frame, write_json
from encore.cache.cache_only import CacheMiss, active as cache_only_active, cache_only
from encore.data.names import set_name
from encore.data.pairs import fingerprint
from encore.data.rewardbench import headline_name
from encore.errors import DataError
from encore.rm.export import stage_export
from encore.report.figures import run_figures
from encore.scale.hardware import detect
from encore.scale.placement import judge_engine
from encore.run.job import fill_command, rate_command, rater_overrides, wandb_names
from encore.judge import LLMJudge
from encore.run.main_table import dataset_name, run_setup, stage_evaluate
from encore.methods import FitContext
from encore.rating.engine import MissingShards, NotRated, Ratings, Slicing, rate_pairs
from encore.rating.shards import with_replicas
from encore.rating.given import check_every_rule_rated, given_ratings, is_given
from encore.rules import Rule, load_rules
from encore.run.settings import check_fields, check_settings
from encore.run.study import log_base, stage_study
from encore.report.style import NAMES_FILE, Names
from encore.run.summary import summary_text
from encore.run.tracking import Tracker
from encore.rm.truncation import truncation_report

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- stages
def build(node: DictConfig) -> Any:
    """``hydra.utils.instantiate`` that lets our own input errors (which name the field and the fix) surface as
    themselves instead of wrapped in Hydra's InstantiationException."""
    try:
        return instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise


def load_eval(node: DictConfig) -> pd.DataFrame:
    """The evaluation pairs. The pair loaders are shared with ``data``, so their messages name ``data.<key>``; here
    the key the user types is ``eval.<key>``."""
    try:
        return build(node)
    except DataError as e:
        raise DataError(re.sub(r"\bdata\.(?=[a-z_])", "eval.", str(e))) from None


def load_train(cfg: DictConfig) -> tuple[pd.DataFrame, list[Rule]]:
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    pairs = build(cfg.data)
    log.info("train pairs: %d (%s), rules: %d", len(pairs), fingerprint(pairs), len(rules))
    return pairs, rules


def stage_ratings(cfg: DictConfig, rater: Any, pairs: pd.DataFrame, rules: list[Rule], run_dir: Path,
                  slicing: Slicing | None = None,
                  given: tuple[Ratings, dict] | None = None) -> tuple[Ratings | None, dict]:
    """All ratings of the pairs (cached, resumable); a shard job (``slicing``) rates its slice and returns None.
    ``given``: ratings a source already holds (:mod:`encore.rating.given`), written out as a rater's would be."""
    try:
        ratings, report = given or rate_pairs(pairs, rules, rater, Path(cfg.cache_dir) / "ratings",
                                     chunk_size=cfg.rating.chunk_size, retry_missing=cfg.rating.retry_missing,
                                     slicing=slicing,
                                     cached_only=PartialState().num_processes > 1 or cache_only_active(),
                                     max_missing_share=cfg.rating.max_missing_share,
                                     other_raters=cfg.rating.get("other_raters", "stop"),
                                     overrides=rater_overrides())
    except MissingShards as e:
        raise e.with_command(rate_command())
    except NotRated as e:
        if cache_only_active():  # a sweep job: the rater is never loaded
            raise CacheMiss(f"{e.n} rating(s) of the training pairs", fill_command()) from None
        raise NotRated(e.n, rate_command()) from None
    if slicing is None and given is None:  # replica processes of this run (encore.node.replicas) rated into the cache
        report = with_replicas(report, [json.loads(p.read_text())
                                        for p in sorted(run_dir.glob("replica_*/rating_report.json"))])
    if ratings is not None:
        check_every_rule_rated(ratings)  # a rule no pair has a rating for stops here, before a file is written
        write_frame(run_dir / "ratings.parquet", ratings.tidy().merge(pairs[["pair_id", "subset"]], on="pair_id"))
    write_json(run_dir / "rating_report.json", report)
    return ratings, report


def stage_heads(cfg: DictConfig, train: pd.DataFrame, ratings: Ratings, eval_pairs: pd.DataFrame,
                run_dir: Path) -> tuple[dict[str, np.ndarray], dict, Any, Any]:
    """The multi-head RM (``cfg.train``: frozen probe or fine-tuning, cached by content hash) and its K head scores
    on the training and evaluation pairs."""
    encoder, trainer = build(cfg.model), build(cfg.train)
    t0 = time.perf_counter()
    arrays, report = trainer.fit_score(train, ratings.values, eval_pairs, encoder, Path(cfg.cache_dir))
    scores = arrays["eval_scores"]  # (N_eval, 2, K)
    n, _, k = scores.shape
    write_frame(run_dir / "head_scores.parquet", pd.DataFrame({
        "pair_id": np.repeat(eval_pairs["pair_id"].to_numpy(), 2 * k),
        "subset": np.repeat(eval_pairs["subset"].to_numpy(), 2 * k),
        "side": np.tile(np.repeat(["chosen", "rejected"], k), n),
        "rule": np.tile(ratings.rules, 2 * n), "score": scores.reshape(-1)}))
    per_head = {c: arrays[c] for c in ("alpha", "val_mse") if c in arrays}
    write_frame(run_dir / "heads.csv", pd.DataFrame({"rule": ratings.rules, **per_head}))
    report = {**report, "seconds": time.perf_counter() - t0, "n_eval": n,
              "truncation": {"train": truncation_report(encoder, train, cfg.cache_dir),
                             "eval": truncation_report(encoder, eval_pairs, cfg.cache_dir)}}
    for part, t in report["truncation"].items():
        if t["texts_truncated"]:
            log.warning("%s pairs: %d text(s) longer than model.max_length=%d lost the start of their conversation "
                        "(%d pair(s) touched; %d token-identical after it)", part, t["texts_truncated"],
                        t["max_length"], t["pairs_truncated"], t["pairs_token_identical"])
    write_json(run_dir / "heads_report.json", report)
    return arrays, report, encoder, trainer


def method_objects(method_cfg: DictConfig) -> list[Any]:
    """``method`` is one method (has ``_target_``) or a mapping of named methods (``method=all``). Each is checked
    and built before anything is read; an error names the key as typed (``method.encore.tau`` under method=all)."""
    if "_target_" in method_cfg:
        return [checked_build(method_cfg, "method")]
    return [checked_build(m, f"method.{key}") for key, m in method_cfg.items()]


def checked_build(node: DictConfig, prefix: str) -> Any:
    """:func:`build` after :func:`check_fields`; a ValueError that names ``<group>.<field>`` is re-worded to name
    ``prefix.<field>``, the key the user types."""
    from hydra.utils import get_class

    check_fields(node, get_class(node._target_), prefix)
    group = prefix.split(".")[0]
    try:
        return build(node)
    except ValueError as e:
        if prefix == group or f"{prefix}." in str(e):
            raise
        raise type(e)(str(e).replace(f"{group}.", f"{prefix}.")) from None


# --------------------------------------------------------------------------------------------------- runners
def _tracker(cfg: DictConfig, run_dir: Path, job: str) -> Tracker:
    """The ``logger`` group's tracker (a ``_target_`` partial), on the main process only."""
    if not PartialState().is_main_process:
        return Tracker()
    config = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
              for k, v in cfg.items() if k != "hydra"}
    return build(cfg.logger)(run_dir=run_dir, config=config, job_type=job, **wandb_names(cfg.experiment_name, job))


FILLERS = ("rate", "train_rm")  # runners that exist to fill caches: cache_only never applies to them


def _run(cfg: DictConfig, run_dir: Path, job: str, upto: str, figures: bool = False) -> dict[str, Any]:
    """Run the stages up to ``upto`` (rate, study, heads, evaluate, figures, export), write metrics.json and end
    with the run's summary (logged, ``summary.txt``). With ``cache_only=true`` (sweep and ablation experiments) any
    cache miss stops the job, naming the command that fills it, before a rater or backbone loads."""
    fill = fill_command() if cfg.get("cache_only") and job not in FILLERS else None
    with cache_only(fill):
        metrics = _stages(cfg, Path(run_dir), job, upto, figures)
    if metrics.get("summary"):
        log.info("what this run found:\n  %s", metrics["summary"].replace("\n", "\n  "))
    return metrics


def _write_result(run_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json (what make_figures.py looks for) and summary.txt: written before any figure is drawn."""
    write_json(run_dir / "metrics.json", metrics)
    if metrics.get("summary"):
        write_bytes(run_dir / "summary.txt", (metrics["summary"] + "\n").encode("utf-8"))


def _stages(cfg: DictConfig, run_dir: Path, job: str, upto: str, figures: bool) -> dict[str, Any]:
    order = ["rate", "study", "heads", "evaluate", "figures", "export"]
    todo = set(order[: order.index(upto) + 1]) | ({"figures"} if figures else set())
    # Everything that can be wrong with the input is checked before the first file is written.
    t0 = time.perf_counter()
    check_settings(cfg)
    methods = method_objects(cfg.method) if "evaluate" in todo else []
    if "export" in todo and cfg.export.method not in [m.name for m in methods if hasattr(m, "weights")]:
        raise ValueError(f"export.method={cfg.export.method!r} is not a weight-based method of this run "
                         f"({[m.name for m in methods]}); fix export.method or add it to method")
    if "heads" in todo:  # the trainer's and backbone's settings (cheap objects: no model loads here)
        checked_build(cfg.train, "train"), checked_build(cfg.model, "model")
    train, rules = load_train(cfg)
    eval_pairs = load_eval(cfg.eval) if todo & {"heads", "evaluate"} else None
    slicing = Slicing.from_config(cfg.rating.num_shards, cfg.rating.shard)
    rater = build(cfg.rater)  # one instance (one loaded model) for the ratings and an LLM judge
    given = given_ratings(rater, train, rules, cfg.rating.max_missing_share, sharded=slicing is not None,
                          judges=[m.name for m in methods if isinstance(m, LLMJudge)]) if is_given(rater) else None
    tracker = _tracker(cfg, run_dir, job)
    metrics: dict[str, Any] = {"job": job, "run_dir": str(run_dir), "experiment": cfg.experiment_name,
                               "dataset": dataset_name(cfg.data), "train_pairs": len(train),
                               "train_pairs_by_subset": {str(k): int(v) for k, v in train["subset"].value_counts().items()},
                               "eval_fingerprint": fingerprint(eval_pairs) if eval_pairs is not None else None}
    if eval_pairs is not None:  # the evaluation set by its own name (encore.data.names) and what its headline is
        metrics.update(eval_set=set_name(cfg.eval), eval_pairs=len(eval_pairs),
                       eval_metric=headline_name(eval_pairs["subset"].unique()))
    metrics["setup"] = run_setup(cfg)
    names = Names.from_config(cfg.get("figures", {}).get("names"))
    write_json(Path(run_dir) / NAMES_FILE, names.as_dict())  # figures and tables rebuilt later use the same names
    failed = True  # until the last line of the try block: a crash is recorded in wandb as the failure it is
    try:
        ratings, metrics["rating"] = stage_ratings(cfg, rater, train, rules, run_dir, slicing, given)  # ranks read the cache
        if slicing is not None:  # a shard job: its slice is in the cache; later stages run once all are in
            log.info("rated shard %d of %d; later stages run without rating.shard once every shard is in",
                     slicing.shard, slicing.num_shards)
            write_json(run_dir / "metrics.json", {**metrics, "seconds": time.perf_counter() - t0})
            failed = False
            return metrics
        if todo & {"heads", "evaluate"} and hasattr(rater, "unload"):
            rater.unload()  # free its GPUs for the backbone; an LLM judge reloads it when evaluation needs it
        tracker.log_metrics({"rating/n_missing": metrics["rating"]["n_missing"]})
        if "study" in todo:
            stats, metrics["correlation"] = stage_study(cfg, ratings, run_dir)
            tracker.log_table("rule_stats", stats)
            tracker.log_metrics({f"study/{k}": v for k, v in metrics["correlation"].items()})
        if "heads" in todo:
            arrays, metrics["heads"], encoder, trainer = stage_heads(cfg, train, ratings, eval_pairs, run_dir)
            if not PartialState().is_main_process:  # under `accelerate launch`, the other ranks only helped train
                failed = False
                return metrics
        if "evaluate" in todo:
            ctx = FitContext(rules=ratings.rules, entropy=stats["entropy"].to_numpy(),
                             accuracy=stats["accuracy"].to_numpy(), delta=ratings.chosen - ratings.rejected,
                             train_ratings=ratings.values,
                             train_pairs=train, eval_pairs=eval_pairs, train_scores=arrays["train_scores"],
                             eval_scores=arrays["eval_scores"], held_out_scores=arrays.get("held_out_scores"),
                             held_out_basis=metrics["heads"].get("held_out_basis", "no held-out head scores"),
                             encoder=encoder, trainer=trainer,
                             rater=judge_engine(rater, detect()),  # the judge: one copy over the node (the plan's)
                             cache_dir=str(cfg.cache_dir), rm_report=metrics["heads"],
                             log_base=log_base(cfg.study))  # ENCORE's τ is in nats: H is converted
            table, wide, sig = stage_evaluate(cfg, methods, ctx, run_dir)
            metrics["main_table"] = table.to_dict(orient="records")
            metrics["significance"] = sig.to_dict(orient="records")
            tracker.log_table("main_table", table)
            tracker.log_metrics({f"eval/{r['method']}/safety": r["safety"] for r in metrics["main_table"]})
        if "export" in todo:
            metrics["export"] = stage_export(trainer.load_rm(arrays, metrics["heads"], encoder), encoder.tok,
                                             cfg.export.method, wide, stats, [r.as_dict() for r in rules],
                                             {"text_format": encoder.text_format, "backbone": encoder.identity(),
                                              "train": trainer.identity()}, run_dir / "export")
        arts = [p for p in (run_dir / "ratings.parquet", run_dir / "head_scores.parquet") if p.exists()]
        tracker.log_artifact(f"{cfg.experiment_name}-scores", "scores", arts, Path(cfg.cache_dir) / "wandb_logged")
        metrics["summary"] = summary_text(metrics, names, cfg.get("paper"))
        tracker.log_summary(metrics["summary"])
        metrics["seconds"] = time.perf_counter() - t0
        _write_result(run_dir, metrics)  # the run's result does not wait on its figures
        if "figures" in todo:
            metrics["figures"] = [str(p) for p in run_figures(run_dir, tracker, metrics["dataset"], metrics["setup"])]
            write_json(run_dir / "metrics.json", metrics)
        failed = False
        return metrics
    finally:
        tracker.finish(exit_code=1 if failed else 0)


def run_rate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return _run(cfg, run_dir, "rate", "rate")


def run_correlation(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return _run(cfg, run_dir, "correlation", "study", figures=True)  # the study's figures: entropy vs accuracy


def run_train_rm(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return _run(cfg, run_dir, "train_rm", "heads")


def run_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return _run(cfg, run_dir, "evaluate", "evaluate")


def run_reproduce(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return _run(cfg, run_dir, "reproduce", "figures")


def run_export(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return _run(cfg, run_dir, "export", "export")
