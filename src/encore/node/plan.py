"""Preflight plan of a whole experiment (``python experiments/plan.py experiment=<name> [overrides]``): for every
stage that loads a model, its parameter count (meta device, no weights), the bytes of its weights, KV cache,
activations and optimiser state, the GPUs it will use, how many of them compute at once (``GPUs computing: N of
M``), and "fits" or "does not fit" with the override that fixes it; plus the rating prompts and prefill tokens the
data implies, the hours of each stage and, for rating, of each engine. ``plan.gpus=8x80GB`` plans for hardware you
are not on (``8xH100`` names its peak too); ``plan.accelerate_config`` for the strategy training will be launched
with. The stages run the same checks (:mod:`encore.scale.placement`, :mod:`encore.scale.tensor_parallel`,
:func:`encore.node.replicas.rater_fill`) before they load anything, so the plan and the run cannot disagree. The hub is
probed once; unreachable, the plan runs offline (no retries).
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from encore.scale.hardware import Gpus, detect, fmt_bytes, parse_gpus, plan_peak
from encore.node.plan_costs import add_costs
from encore.node.plan_data import _needs_hub, data_summary, estimated_eval, offline_unless_reachable  # noqa: F401

log = logging.getLogger(__name__)


def plan_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Every model-loading stage of the experiment ``cfg`` on ``cfg.plan.gpus``; nothing is loaded."""
    from dataclasses import replace

    from encore.scale.distributed import machines_from_file
    from encore.node.train_fill import choose, is_auto
    from encore.judge import LLMJudge
    from encore.run.pipeline import build, method_objects
    from encore.rating.given import is_given
    from encore.node.replicas import wanted
    from encore.rules import load_rules
    from encore.scale.placement import judge_engine

    pl = cfg.plan
    offline = offline_unless_reachable()  # once, before any config or tokenizer read
    gpus = parse_gpus(pl.gpus, pl.headroom) or detect(pl.headroom)
    named = not is_auto(pl.accelerate_config) and str(pl.accelerate_config).lower() != "single"
    train_gpus = replace(gpus, nodes=machines_from_file(pl.accelerate_config) if named else 1)  # gpus: one machine
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    rater, encoder, trainer = build(cfg.rater), build(cfg.model), build(cfg.train)
    rater_name = getattr(rater, "model", getattr(rater, "name", type(rater).__name__))
    given = is_given(rater)  # ratings that exist: no rating prompts, no rater to place
    sample = pl.get("sample")
    data = ({"readable": False, "reason": f"ratings exist ({rater_name}): nothing to rate"} if given
            else data_summary(cfg, rules, getattr(rater, "prompts", None), int(sample) if sample else None,
                              estimates=pl.get("estimates")))
    stages: list[dict[str, Any]] = []

    def add(stage: str, what: str, fn: Any) -> None:
        try:
            place = fn()
        except Exception as e:  # noqa: BLE001 - an unknown architecture is a plan result, with its fix
            stages.append({"stage": stage, "model": what, "fits": False, "error": str(e)})
            return
        if place is None:
            stages.append({"stage": stage, "model": what, "fits": True, "where": "remote server", "parts": {}})
            return
        stages.append({"stage": stage, "model": what, "fits": place.fits, "where": place.where, "need": place.need,
                       "parts": place.parts, "fix": place.fix, "n_gpus": place.n_gpus, "batch": place.batch,
                       "tensor_parallel": place.tensor_parallel})

    engine = f" ({ENGINES.get(type(rater).__name__, type(rater).__name__)})"
    if not given:
        add("rate", f"rater {rater_name}{engine}",
            lambda: _rater_place(rater, gpus, len(rules), judge=False, copies=wanted(cfg.rating.get("replicas"))))
    if any(isinstance(m, LLMJudge) for m in method_objects(cfg.method)):
        add("judge", f"rater {rater_name}{engine} (reloaded after training)",
            lambda: _rater_place(judge_engine(rater, gpus), gpus, len(rules), judge=True, copies=1))
    if hasattr(trainer, "placement"):  # fine-tuning: the launch train_rm.py starts on these GPUs (train_fill)
        how = choose(trainer, encoder, gpus, pl.accelerate_config)
        add("train", f"backbone {encoder.name_or_path} ({how.strategy}, {how.processes} process(es))",
            lambda: trainer.placement(encoder, train_gpus, how.strategy, how.processes))
        if "error" not in stages[-1]:
            stages[-1].update(processes=how.processes, launch=how.describe(), batch_line=_batch_line(trainer, how),
                              verify=_verify_line(stages[-1]["parts"], how))
        add("score", f"fine-tuned {encoder.name_or_path}", lambda: encoder.placement(gpus, trainer.score_batch_size))
    else:
        add("embed", f"backbone {encoder.name_or_path} (frozen)", lambda: encoder.placement(gpus))
    for s in stages:
        if "error" not in s and s["model"].startswith(("rater", "backbone", "fine-tuned")):
            s["arch"] = _arch_line(s, rater, encoder)
    peak, peak_from = plan_peak(gpus, pl.get("peak_tflops"))
    mfu = float(pl.get("mfu", 0.4))
    eval_readable = not (_needs_hub(cfg.eval) and offline)
    add_costs(stages, cfg, data, rater, encoder, trainer, gpus, len(rules), mfu, peak, eval_readable=eval_readable,
              eval_estimate=None if eval_readable else estimated_eval(cfg.eval, pl.get("estimates")))
    return {"experiment": cfg.experiment_name, "gpus": gpus.describe(), "memory_from": gpus.memory_from,
            "gpu_count": gpus.count, "data": data,
            "stages": stages, "fits": all(s["fits"] for s in stages), "mfu": mfu, "peak_tflops": peak,
            "peak_from": peak_from, "offline": offline}


ENGINES = {"HFRater": "rater=hf: transformers, device_map", "VLLMRater": "rater=vllm: vLLM in process"}


def _rater_place(rater: Any, gpus: Gpus, n_rules: int, judge: bool, copies: int | None) -> Any:
    if not hasattr(rater, "placement"):
        return None  # a remote server (rater=openai): its GPUs are planned where it runs (rater=vllm numbers)
    return rater.placement(gpus, n_rules=n_rules, judge=judge, copies=copies)


def _batch_line(trainer: Any, how: Any) -> str:
    """``global batch N`` and how the launch makes it up: the same N on any number of GPUs."""
    if not hasattr(trainer, "split"):
        return ""
    try:
        micro, accum = trainer.split(how.processes)
    except ValueError as e:
        return f"global batch {trainer.global_batch}: {e}"
    return (f"global batch {trainer.global_batch} pairs per optimiser step = {how.processes} process(es) x {micro} "
            f"pairs x {accum} accumulation step(s) (train.global_batch; the same on any GPU count)")


def _verify_line(parts: dict[str, int], how: Any, rate: float | None = None) -> str:
    """Expected time to verify a checkpoint of this training before a resume: its weights and optimiser state (one
    process's parts; a sharded strategy saves every rank's shard), hashed by the ranks between them
    (:func:`encore.scale.distributed.shared_hashes`) at ``rate`` bytes/s per thread (default: measured here)."""
    from encore.cache.integrity import hash_rate, verify_seconds

    per = sum(v for k, v in parts.items() if k.startswith(("weights", "optimizer")))
    total = int(per * (how.processes if how.strategy.startswith(("fsdp", "deepspeed")) else 1))
    rate = float(rate or hash_rate())
    secs = verify_seconds(total, ranks=how.processes, rate=rate)
    return (f"~{secs:,.0f} s for a checkpoint of ~{fmt_bytes(total)} (weights, optimiser state) over "
            f"{how.processes} rank(s) at {rate / 1e6:,.0f} MB/s SHA-256 per thread (measured on this machine; a slower "
            f"disk adds to it); the waiting ranks' collective timeout follows it")


def _arch_line(stage: dict, rater: Any, encoder: Any) -> str:
    try:
        a = rater.arch_info() if stage["model"].startswith("rater") else encoder.arch_info()
    except Exception:  # noqa: BLE001
        return ""
    return f"{a.n_params / 1e9:.2f} B parameters ({a.model_type}, {a.n_layers} layers; config: {a.source})"


def format_plan(plan: dict[str, Any]) -> str:
    lines = [f"plan for experiment={plan['experiment']} on {plan['gpus']}"]
    if plan.get("memory_from"):
        lines.append(f"memory per GPU: {plan['memory_from']}")
    if plan["gpu_count"]:
        lines.append(f"time: each stage's at MFU {plan['mfu']:g} of {plan['peak_tflops']:g} TFLOP/s dense bf16 per "
                     f"computing GPU ({plan['peak_from']}), in h (hours) or min (minutes)" if plan["peak_tflops"]
                     else f"time: {plan['peak_from']}")
    d = plan["data"]
    if d["readable"]:
        lines.append(f"data{' (ESTIMATE)' if d.get('estimated') else ''}: {d['n_pairs']:,} pairs -> {d['n_texts']:,} responses x {d['n_rules']} rules = "
                     f"{d['n_prompts']:,} rating prompts; prefill {d['prefill_tokens']:,} tokens "
                     f"({d['prefill_tokens_prefix_reuse']:,} with shared-prefix reuse); longest prompt "
                     f"{d['longest_prompt_tokens']:,} tokens [{d['tokens_from']}]")
    else:
        lines.append(f"data: not counted ({d['reason']})")
    for s in plan["stages"]:
        lines.append(f"[{s['stage']}] {s['model']}")
        if s.get("arch"):
            lines.append(f"    {s['arch']}")
        if "error" in s:
            lines.append(f"    -> cannot plan: {s['error']}")
            continue
        parts = " + ".join(f"{k} {fmt_bytes(v)}" for k, v in s["parts"].items() if v)
        lines.append(f"    {parts} = {fmt_bytes(s.get('need', 0))}" if parts else "    (no local model)")
        lines.append(f"    -> {'fits' if s['fits'] else 'DOES NOT FIT'}: {s['where']}")
        for key in ("fix", "launch", "batch_line", "verify", "sized", "replicas", "computing", "cost", "engines"):
            if s.get(key):
                lines.append(f"    {_LABEL[key]}{s[key]}")
    timed = [s for s in plan["stages"] if s.get("hours") is not None]
    if timed:
        est = any(s["cost"].startswith("ESTIMATE") for s in timed)
        each = ", ".join(f"{s['stage']} {s['hours']:,.2f} h" for s in timed)
        lines.append(f"hours in all: {sum(s['hours'] for s in timed):,.2f} h ({each})"
                     + (" [ESTIMATE: data not read here, see data:]" if est else ""))
    lines.append("every stage fits" if plan["fits"] else "some stage does not fit: apply its fix, then plan again")
    return "\n".join(lines)


_LABEL = {"fix": "fix: ", "launch": "launch: ", "batch_line": "", "verify": "checkpoint verification: ", "sized": "kv cache: ", "replicas": "replicas: ", "computing": "GPUs computing: ",
          "cost": "cost: ", "engines": "engines: "}
