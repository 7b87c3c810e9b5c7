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

import numpy as np
from omegaconf import DictConfig, OmegaConf

from encore.scale.hardware import Gpus, detect, fmt_bytes, parse_gpus, plan_peak
from encore.node.plan_costs import add_costs

log = logging.getLogger(__name__)


def _needs_hub(node: Any) -> bool:
    """Whether a data config (or any part of a combined one) reads from the hub rather than a local path."""
    if not isinstance(node, DictConfig):
        return False
    if node.get("hub_id") and not node.get("path"):
        return True
    return any(_needs_hub(v) for k, v in node.items() if k == "parts" or isinstance(v, DictConfig))


def offline_unless_reachable() -> bool:
    """Detect once whether the hub answers (:func:`encore.scale.arch._hub_reachable`: a 2 s TCP connect); when it does
    not, switch this process to offline mode (``HF_HUB_OFFLINE``, read by huggingface_hub at every call), so no
    later config or tokenizer read spends a minute in retries. True when offline."""
    import os

    from huggingface_hub import constants

    from encore.scale.arch import _hub_reachable

    if _hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    return True


def data_summary(cfg: DictConfig, rules: list, prompts: Any, sample: int | None, seed: int = 0) -> dict[str, Any]:
    """Rating prompts and prefill tokens the training data implies, with and without the shared-prefix reuse that
    ``rater=hf`` and vLLM's prefix cache both exploit. Token counts come from the rater's tokenizer on every response
    (exact) when there are at most ``sample`` of them (``plan.sample``; None: always), else on a sample (the 50
    longest by characters and the rest at random, totals scaled up; the result says "sampled"); from characters / 4
    on every response when the tokenizer cannot be read here."""
    from encore.run.pipeline import build

    if _needs_hub(cfg.data) and offline_unless_reachable():
        return {"readable": False, "reason": "hub not reachable from here; set data.path (or data.parts.*.path) to "
                                               "local copies to count prompts and tokens"}
    try:
        pairs = build(cfg.data)
    except Exception as e:  # noqa: BLE001 - any failure to read data only limits the plan, reported as such
        return {"readable": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    texts = list(dict.fromkeys((p, x) for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])
                               for x in (c, r)))
    K, n = len(rules), len(texts)
    out = {"readable": True, "n_pairs": len(pairs), "n_texts": n, "n_rules": K, "n_prompts": n * K}
    exact = not sample or n <= int(sample)
    if exact:
        pick, weights = np.arange(n), np.ones(n)
    else:
        order = np.argsort([-len(p) - len(x) for p, x in texts], kind="stable")
        rest = np.random.default_rng(seed).permutation(order[50:])[: max(int(sample) - 50, 0)]
        pick = np.concatenate([order[:50], rest]).astype(int)
        weights = np.where(np.arange(len(pick)) < 50, 1.0, (n - 50) / max(len(rest), 1))
    try:
        from encore.rating.tokens import common_prefix

        seqs = prompts.rule_ids([texts[i][0] for i in pick], [texts[i][1] for i in pick], rules)
        full = np.array([sum(map(len, per)) for per in seqs], float)
        shared = np.array([common_prefix(per) for per in seqs], float)
        longest = max(max(map(len, per)) for per in seqs)
        how = f"rater tokenizer on {len(pick)} of {n} responses" + (
            " (exact)" if exact else f" (sampled: the 50 longest by characters and {len(pick) - 50} at random, "
                                     f"totals scaled up; plan.sample={n} counts all)")
    except Exception as e:  # noqa: BLE001 - no tokenizer here: estimate every response, and say so
        pick, weights, exact = np.arange(n), np.ones(n), None
        chars = np.array([len(p) + len(x) + 400 for p, x in texts], float)  # + template and rule
        full, shared, longest = K * chars / 4, chars / 4 - 15, int(chars.max() / 4)
        how = (f"estimated as characters / 4 (tokenizer not readable here: {type(e).__name__}; for exact counts set "
               "rater.tokenizer to a local copy, e.g. rater.tokenizer=shared:llama3-instruct for Llama-3)")
    chars = np.array([len(texts[i][0]) + len(texts[i][1]) for i in pick], float)
    out.update(prefill_tokens=int((weights * full).sum()),
               prefill_tokens_prefix_reuse=int((weights * (full - (K - 1) * shared)).sum()),
               longest_prompt_tokens=int(longest), tokens_from=how,
               longest_from={True: "exact", False: "sampled", None: "estimated"}[exact],
               text_tokens_mean=float((weights * chars).sum() / 4 / max(weights.sum(), 1)))  # RM input: chars / 4
    return out


def plan_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Every model-loading stage of the experiment ``cfg`` on ``cfg.plan.gpus``; nothing is loaded."""
    from dataclasses import replace

    from encore.scale.distributed import machines_from_file, strategy_from_file
    from encore.judge import LLMJudge
    from encore.run.pipeline import build, method_objects
    from encore.rating.given import is_given
    from encore.node.replicas import wanted
    from encore.rules import load_rules

    pl = cfg.plan
    offline = offline_unless_reachable()  # once, before any config or tokenizer read
    gpus = parse_gpus(pl.gpus, pl.headroom) or detect(pl.headroom)
    train_gpus = replace(gpus, nodes=machines_from_file(pl.accelerate_config))  # plan.gpus describes one machine
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    rater, encoder, trainer = build(cfg.rater), build(cfg.model), build(cfg.train)
    rater_name = getattr(rater, "model", getattr(rater, "name", type(rater).__name__))
    given = is_given(rater)  # ratings that exist: no rating prompts, no rater to place
    sample = pl.get("sample")
    data = ({"readable": False, "reason": f"ratings exist ({rater_name}): nothing to rate"} if given
            else data_summary(cfg, rules, getattr(rater, "prompts", None), int(sample) if sample else None))
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
            lambda: _rater_place(rater, gpus, len(rules), judge=True, copies=1))
    if hasattr(trainer, "placement"):  # fine-tuning
        strategy, procs = strategy_from_file(pl.accelerate_config)
        add("train", f"backbone {encoder.name_or_path} ({strategy}, {procs} process(es))",
            lambda: trainer.placement(encoder, train_gpus, strategy, procs))
        add("score", f"fine-tuned {encoder.name_or_path}", lambda: encoder.placement(gpus, trainer.score_batch_size))
    else:
        add("embed", f"backbone {encoder.name_or_path} (frozen)", lambda: encoder.placement(gpus))
    for s in stages:
        if "error" not in s and s["model"].startswith(("rater", "backbone", "fine-tuned")):
            s["arch"] = _arch_line(s, rater, encoder)
    peak, peak_from = plan_peak(gpus, pl.get("peak_tflops"))
    mfu = float(pl.get("mfu", 0.4))
    add_costs(stages, cfg, data, rater, encoder, trainer, gpus, len(rules), mfu, peak,
              eval_readable=not (_needs_hub(cfg.eval) and offline))
    return {"experiment": cfg.experiment_name, "gpus": gpus.describe(), "gpu_count": gpus.count, "data": data,
            "stages": stages, "fits": all(s["fits"] for s in stages), "mfu": mfu, "peak_tflops": peak,
            "peak_from": peak_from, "offline": offline}


ENGINES = {"HFRater": "rater=hf: transformers, device_map", "VLLMRater": "rater=vllm: vLLM in process"}


def _rater_place(rater: Any, gpus: Gpus, n_rules: int, judge: bool, copies: int | None) -> Any:
    if not hasattr(rater, "placement"):
        return None  # a remote server (rater=openai): its GPUs are planned where it runs (rater=vllm numbers)
    return rater.placement(gpus, n_rules=n_rules, judge=judge, copies=copies)


def _arch_line(stage: dict, rater: Any, encoder: Any) -> str:
    try:
        a = rater.arch_info() if stage["model"].startswith("rater") else encoder.arch_info()
    except Exception:  # noqa: BLE001
        return ""
    return f"{a.n_params / 1e9:.2f} B parameters ({a.model_type}, {a.n_layers} layers; config: {a.source})"


def format_plan(plan: dict[str, Any]) -> str:
    lines = [f"plan for experiment={plan['experiment']} on {plan['gpus']}"]
    if plan["gpu_count"]:
        lines.append(f"hours: at MFU {plan['mfu']:g} of {plan['peak_tflops']:g} TFLOP/s dense bf16 per GPU "
                     f"({plan['peak_from']})" if plan["peak_tflops"] else f"hours: {plan['peak_from']}")
    d = plan["data"]
    if d["readable"]:
        lines.append(f"data: {d['n_pairs']:,} pairs -> {d['n_texts']:,} responses x {d['n_rules']} rules = "
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
        for key in ("fix", "sized", "replicas", "computing", "cost", "engines"):
            if s.get(key):
                lines.append(f"    {_LABEL[key]}{s[key]}")
    lines.append("every stage fits" if plan["fits"] else "some stage does not fit: apply its fix, then plan again")
    return "\n".join(lines)


_LABEL = {"fix": "fix: ", "sized": "kv cache: ", "replicas": "replicas: ", "computing": "GPUs computing: ",
          "cost": "cost: ", "engines": "engines: "}
