"""The plan's lines on how busy the node is and what each stage costs: how many rater copies share the node and at
which batch (:func:`encore.node.replicas.rater_fill`, what ``rate.py`` starts), how many GPUs compute at once, and, per
stage, the tokens it computes, their FLOPs and the hours at ``plan.mfu`` of the GPUs' bf16 peak
(:mod:`encore.scale.throughput`); for rating, the same for each engine that could run it (``rater=hf`` as placed,
``rater=vllm`` at its tensor parallel size), so the cost of the choice shows before queueing. Tokens come from the
data the plan could read; a stage whose tokens it could not count says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from encore.scale import throughput as T
from encore.scale.hardware import Gpus


def _eval_pairs(cfg: Any, readable: bool) -> Any:
    """The evaluation pairs when they can be read here (``readable``: local, or the hub answers), else None."""
    from encore.run.pipeline import build

    if not readable:
        return None
    try:
        return build(cfg.eval)
    except Exception:  # noqa: BLE001 - unreadable evaluation data only leaves its tokens uncounted
        return None


def as_engine(rater: Any, kind: str) -> Any:
    """``rater`` as the engine ``kind`` (``hf`` or ``vllm``) would run it: same model, tokenizer, prompts and
    ``max_length``, that engine's defaults otherwise (batch ceiling, tensor parallel ``auto``); None for a rater
    neither engine runs (a remote server, a random-weight model built from a config)."""
    from encore.rating.hf import HFRater
    from encore.rating.vllm import VLLMRater

    cls = {"hf": HFRater, "vllm": VLLMRater}[kind]
    if isinstance(rater, cls):
        return rater
    if not isinstance(rater, (HFRater, VLLMRater)) or getattr(rater, "config", None):
        return None
    keep = ("model", "revision", "tokenizer", "mode", "scale_max", "system_prompt", "max_length", "dtype", "arch")
    return cls(**{k: getattr(rater, k) for k in keep})


def node_use(rater: Any, gpus: Gpus, n_rules: int, setting: Any) -> dict[str, Any]:
    """One engine on the node for rating: its placement, the copies ``rating.replicas`` gives, and the GPUs
    computing at once (a ``device_map`` copy computes on one GPU at a time, a vLLM copy on all its
    tensor-parallel GPUs)."""
    from encore.node.replicas import rater_fill

    place, per, n = rater_fill(rater, gpus, n_rules, setting)
    vllm = bool(place.tensor_parallel) if place is not None else False
    computing = (n * per if vllm else n) if gpus.count and place is not None and place.fits else 0
    return {"place": place, "per": per, "copies": n, "computing": computing, "vllm": vllm}


def _copies_line(use: dict, gpus: Gpus, setting: Any, ceiling: int | None) -> str:
    p, n, per = use["place"], use["copies"], use["per"]
    how = (f"tensor parallel {p.tensor_parallel}" if use["vllm"] else
           f"rater.batch_size {p.batch}" + (f", the largest up to {ceiling} that fits the most copies"
                                             if ceiling and p.batch != ceiling else ""))
    idle = gpus.count - n * per
    return (f"{n} x {per} GPU(s) ({how}; rating.replicas={setting}: one rate.py process and rating shard per copy, "
            "each on its own GPUs via CUDA_VISIBLE_DEVICES)" + (f"; {idle} GPU(s) idle" if idle else ""))


def _computing_line(use: dict, gpus: Gpus) -> str:
    if not gpus.count:
        return "0 of 0 (no GPU: the CPU computes)"
    n, c = use["copies"], use["computing"]
    why = (f"{n} vLLM cop{'y' if n == 1 else 'ies'}, every tensor-parallel GPU computing" if use["vllm"] else
           f"{n} device_map cop{'y' if n == 1 else 'ies'}, each computing on one of its GPUs at a time")
    return f"{c} of {gpus.count} ({why})"


def _sized_line(rater: Any, use: dict, data: dict, gpus: Gpus, n_rules: int) -> str:
    """What the KV cache is sized from, and why the data does not change it (the run sizes it the same way)."""
    p = use["place"]
    longest = data.get("longest_prompt_tokens") if data.get("readable") else None
    seen = "" if longest is None else {
        "exact": f"; this data's longest prompt is {longest:,} tokens",
        "sampled": f"; the longest prompt in the sample is {longest:,} tokens",
        "estimated": f"; this data's longest prompt is about {longest:,} tokens (characters / 4)"}[data["longest_from"]]
    if use["vllm"]:
        step = next((v for k, v in p.parts.items() if k.startswith("kv cache")), 0) // max(p.tensor_parallel, 1)
        return (f"one scheduler step's KV cache decides the tensor parallel size ({step / 1e9:.1f} GB per GPU: "
                f"vLLM's max_num_batched_tokens, at least one rater.max_length + 1 sequence), whatever the data{seen}")
    line = (f"sized for {p.batch} responses x {n_rules} rules x {rater.max_length:,} tokens (rater.max_length: a run "
            f"sizes it so, whatever the data, since any prompt up to it may come){seen}")
    if longest and longest < rater.max_length and gpus.count:
        short = replace(rater, max_length=max(longest, 2)).placement(gpus, n_rules=n_rules, copies=None)
        if short.fits and short.n_gpus < p.n_gpus:
            line += (f"; rater.max_length={longest} would need {short.n_gpus} GPU(s) per copy (a new cache key: "
                     "max_length decides which prompts are missing)")
    return line


def engines_line(rater: Any, gpus: Gpus, n_rules: int, setting: Any, tokens: int | None, peak: float | None,
                 mfu: float) -> str:
    """Each engine that could rate: its copies, GPUs computing and hours for ``tokens`` (both at ``mfu``)."""
    import math

    parts, speed = [], {}
    for kind in ("hf", "vllm"):
        other = as_engine(rater, kind)
        if other is None:
            continue
        try:
            use = node_use(other, gpus, n_rules, setting if other is rater else "auto")
        except Exception as e:  # noqa: BLE001 - an engine that cannot plan this model says why, the other still shows
            parts.append(f"rater={kind}: cannot plan ({str(e).splitlines()[0][:120]})")
            continue
        if not use["place"].fits:
            parts.append(f"rater={kind}: does not fit ({use['place'].fix})")
            continue
        p, c = use["place"], use["computing"]
        shape = (f"{use['copies']} x tensor parallel {p.tensor_parallel}" if use["vllm"] else
                 f"{use['copies']} x {use['per']} GPU(s) at batch {p.batch}")
        h = T.hours(2.0 * other.arch_info().n_params * tokens, c, peak, mfu) if tokens else None
        when = "" if h is None else f", {h:,.1f} h" if h >= 1 else f", {h * 60:.1f} min"
        parts.append(f"rater={kind}{' (this run)' if other is rater else ''}: {shape}, {c} of {gpus.count} computing"
                     + when)
        speed[kind] = c
    if len(speed) == 2 and min(speed.values()) > 0 and not math.isclose(*speed.values()):
        fast = max(speed, key=speed.get)
        parts.append(f"rater={fast} is {max(speed.values()) / min(speed.values()):.1f}x faster at equal MFU "
                     "(an assumption: benchmarks/ measures the engines side by side)")
    if tokens is None:
        parts.append("hours need the data's tokens (data.path)")
    return "; ".join(parts)


def add_costs(stages: list[dict], cfg: Any, data: dict, rater: Any, encoder: Any, trainer: Any, gpus: Gpus,
              n_rules: int, mfu: float, peak: float | None, eval_readable: bool = True,
              eval_estimate: tuple[int, float, str] | None = None) -> None:
    """Adds ``sized``, ``replicas``, ``computing``, ``engines`` (rate), ``cost`` and ``hours`` (every stage whose
    tokens are known, or estimated: then the cost line says ESTIMATE) to the plan's stage dicts.
    ``eval_estimate``: (pairs, characters per pair, where from) of evaluation data not readable here."""
    _add(stages, cfg, data, rater, encoder, trainer, gpus, n_rules, mfu, peak, eval_readable, eval_estimate)
    for s in stages:
        if s.get("cost") and s.get("hours") is not None and (data.get("estimated") or s.get("estimated")):
            s["cost"] = "ESTIMATE (from plan.estimates, see data:) " + s["cost"]


def _add(stages: list[dict], cfg: Any, data: dict, rater: Any, encoder: Any, trainer: Any, gpus: Gpus, n_rules: int,
         mfu: float, peak: float | None, eval_readable: bool, eval_estimate: Any) -> None:
    readable = data.get("readable", False)
    ev = _eval_pairs(cfg, eval_readable) if any(s["stage"] in ("judge", "score") for s in stages) else None
    n_eval = len(ev) if ev is not None else eval_estimate[0] if eval_estimate else 0
    mean = data.get("text_tokens_mean")
    setting = cfg.rating.get("replicas", "auto")
    for s in stages:
        if "error" in s or not s.get("fits"):
            continue
        stage, gpu = s["stage"], 1 if gpus.count else 0
        if stage == "rate" and hasattr(rater, "placement"):
            try:
                use = node_use(rater, gpus, n_rules, setting)
            except ValueError as e:  # an impossible rating.replicas: refused here as at run time, with the fix
                s.update(fits=False, fix=str(e), where=f"{s['where']}, but not rating.replicas={setting} copies")
                continue
            ceiling = rater.ceiling(gpus) if hasattr(rater, "ceiling") else None
            s.update(sized=_sized_line(rater, use, data, gpus, n_rules), computing=_computing_line(use, gpus),
                     replicas=_copies_line(use, gpus, setting, ceiling) if gpus.count else "1 (this process; no GPU)")
            reuse = getattr(rater, "prefix_reuse", True)
            tokens = data["prefill_tokens_prefix_reuse" if reuse else "prefill_tokens"] if readable else None
            if gpus.count:
                s["engines"] = engines_line(rater, gpus, n_rules, setting, tokens, peak, mfu)
            if readable:
                c = T.inference(rater.arch_info().n_params, tokens, use["computing"], peak, mfu,
                                "prefill with shared-prefix reuse" if reuse else "prefill")
                s.update(cost=c.line(mfu, peak), hours=c.hours)
            else:
                s["cost"] = f"not counted ({data.get('reason', 'data not readable')})"
            continue
        if stage == "judge":
            gpu = (s.get("tensor_parallel") or 1) if gpus.count else 0
            s["computing"] = f"{gpu} of {gpus.count}" + (
                f" (one vLLM copy over the node, tensor parallel {gpu}: encore.scale.placement.judge_engine)"
                if s.get("tensor_parallel") else " (one device_map copy)" if gpus.count else "")
            if ev is None and eval_estimate is None:
                s["cost"] = "not counted (evaluation pairs not readable here; no plan.estimates entry)"
                continue
            if ev is not None:
                chars, how = sum(len(p) + len(c) + len(r) for p, c, r in zip(ev["prompt"], ev["chosen"],
                                                                            ev["rejected"])), "characters / 4"
            else:
                chars, how = n_eval * eval_estimate[1], f"characters / 4, {eval_estimate[2]}"
                s["estimated"] = True
            c = T.inference(rater.arch_info().n_params, int(2 * chars / 4), gpu, peak, mfu,
                            f"{n_eval:,} pairs, both orders, {how}")
            s.update(cost=c.line(mfu, peak), hours=c.hours)
            continue
        if stage == "train":
            procs = s.get("processes", 1)
            gpu = procs if gpus.count else 0
            s["computing"] = f"{gpu} of {gpus.count * gpus.nodes} (one training process per GPU)"
        elif stage in ("score", "embed"):
            ranks = next((t.get("processes", 1) for t in stages if t["stage"] == "train"), 1)
            if stage == "score" and ranks > 1 and gpus.count:  # the training launch's ranks score 1/n each
                gpu = ranks
            s["computing"] = f"{gpu} of {gpus.count}" + (" (the training launch's ranks, each scoring 1/n of the "
                                                         "pairs)" if gpu > 1 else "")
        if mean is None:
            s["cost"] = f"not counted ({data.get('reason', 'data not readable')})"
        elif stage == "train":
            micro, accum = trainer.split(procs)
            seqs = T.training_sequences(data["n_pairs"], trainer.epochs, trainer.val_frac, trainer.max_steps,
                                        micro, accum, procs)
            tokens = int(seqs * min(mean, encoder.max_length))
            c = T.training(encoder.arch_info().n_params, tokens, gpu, peak, mfu,
                           f"{seqs:,} sequences x {min(mean, encoder.max_length):.0f} tokens (characters / 4)")
            s.update(cost=c.line(mfu, peak), hours=c.hours)
        elif stage in ("score", "embed"):
            seqs = 2 * (data["n_pairs"] + n_eval)
            tokens = int(seqs * min(mean, encoder.max_length))
            which = ("training and evaluation pairs" if ev is not None else "training and (estimated) evaluation "
                     "pairs" if eval_estimate else "training pairs; the evaluation pairs are not readable here and "
                     "not counted")
            c = T.inference(encoder.arch_info().n_params, tokens, gpu, peak, mfu,
                            f"{seqs:,} sequences, 2 per pair ({which}) x {min(mean, encoder.max_length):.0f} "
                            "tokens (characters / 4)")
            s.update(cost=c.line(mfu, peak), hours=c.hours)
