"""The plan's replicas and throughput lines: how many rater copies share the node (:mod:`encore.replicas`) and, per
stage, the tokens it computes, their FLOPs and the hours at ``plan.mfu`` of the GPUs' bf16 peak
(:mod:`encore.scale.throughput`). Tokens come from the data the plan could read; a stage whose tokens it could not count
says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from encore.scale import throughput as T
from encore.scale.hardware import Gpus


def _eval_pairs(cfg: Any, readable: bool) -> Any:
    """The evaluation pairs when they can be read here (``readable``: local, or the hub answers), else None."""
    from encore.pipeline import build

    if not readable:
        return None
    try:
        return build(cfg.eval)
    except Exception:  # noqa: BLE001 - unreadable evaluation data only leaves its tokens uncounted
        return None


def rater_replicas(rater: Any, setting: Any, per: int, gpus: Gpus, n_rules: int, seq: int | None) -> tuple[int, str]:
    """(replicas, the plan's line about them): ``rating.replicas`` on these GPUs; when GPUs stay idle, the largest
    ``rater.batch_size`` at which one more copy fits (rater=hf)."""
    from encore.replicas import how_many

    n = how_many(setting, per, gpus.count)
    idle = gpus.count - n * per
    line = (f"{n} x {per} GPU(s) (rating.replicas={setting}: one rate.py process and rating shard per copy, each on "
            f"its own GPUs via CUDA_VISIBLE_DEVICES)" + (f"; {idle} GPU(s) idle" if idle else ""))
    if idle and getattr(rater, "batch_size", 1) > 1 and hasattr(rater, "max_length"):
        want = gpus.count // (n + 1)
        for b in range(rater.batch_size - 1, 0, -1):
            p = replace(rater, batch_size=b).placement(gpus, n_rules=n_rules, seq_len=seq)
            if p.fits and p.n_gpus <= want:
                line += f"; rater.batch_size={b} fits {gpus.count // p.n_gpus} copies of {p.n_gpus} GPU(s)"
                break
    return n, line


def add_costs(stages: list[dict], cfg: Any, data: dict, rater: Any, encoder: Any, trainer: Any, gpus: Gpus,
              n_rules: int, seq: int | None, mfu: float, peak: float | None, eval_readable: bool = True) -> None:
    """Adds ``replicas`` (rate) and ``cost`` (every stage whose tokens are known) to the plan's stage dicts."""
    from encore.scale.distributed import strategy_from_file

    readable = data.get("readable", False)
    ev = _eval_pairs(cfg, eval_readable) if any(s["stage"] in ("judge", "score") for s in stages) else None
    n_eval = len(ev) if ev is not None else 0
    mean = data.get("text_tokens_mean")
    vllm = hasattr(rater, "tensor_parallel_size")
    for s in stages:
        if "error" in s or not s.get("fits"):
            continue
        stage, gpu = s["stage"], 1 if gpus.count else 0
        if stage == "rate" and hasattr(rater, "placement"):
            per = s.get("n_gpus") or 0
            n, s["replicas"] = rater_replicas(rater, cfg.rating.get("replicas", "auto"), per, gpus, n_rules, seq) \
                if gpus.count and per else (1, "1 (this process; no GPU)")
            if not readable:
                s["cost"] = f"not counted ({data.get('reason', 'data not readable')})"
                continue
            reuse = getattr(rater, "prefix_reuse", True)
            tokens = data["prefill_tokens_prefix_reuse" if reuse else "prefill_tokens"]
            gpu = n * (per if vllm else 1) if gpus.count else 0
            s["cost"] = T.inference(rater.arch_info().n_params, tokens, gpu, peak, mfu,
                                    "prefill with shared-prefix reuse" if reuse else "prefill").line(mfu, peak)
        elif stage == "judge":
            if ev is None:
                s["cost"] = "not counted (evaluation pairs not readable here)"
                continue
            chars = sum(len(p) + len(c) + len(r) for p, c, r in zip(ev["prompt"], ev["chosen"], ev["rejected"]))
            gpu = (getattr(rater, "tensor_parallel_size", 1) if vllm else 1) if gpus.count else 0
            s["cost"] = T.inference(rater.arch_info().n_params, int(2 * chars / 4), gpu, peak, mfu,
                                    f"{n_eval:,} pairs, both orders, characters / 4").line(mfu, peak)
        elif mean is None:
            s["cost"] = f"not counted ({data.get('reason', 'data not readable')})"
        elif stage == "train":
            strategy, procs = strategy_from_file(cfg.plan.accelerate_config)
            seqs = T.training_sequences(data["n_pairs"], trainer.epochs, trainer.val_frac, trainer.max_steps,
                                        trainer.batch_size, trainer.grad_accum, procs)
            tokens = int(seqs * min(mean, encoder.max_length))
            s["cost"] = T.training(encoder.arch_info().n_params, tokens, procs if gpus.count else 0, peak, mfu,
                                   f"{seqs:,} sequences x {min(mean, encoder.max_length):.0f} tokens "
                                   "(characters / 4)").line(mfu, peak)
        elif stage in ("score", "embed"):
            seqs = 2 * (data["n_pairs"] + n_eval)
            tokens = int(seqs * min(mean, encoder.max_length))
            s["cost"] = T.inference(encoder.arch_info().n_params, tokens, gpu, peak, mfu,
                                    f"{seqs:,} sequences ({'train + eval' if ev is not None else 'train; eval not readable'}"
                                    f" pairs) x {min(mean, encoder.max_length):.0f} "
                                    "tokens (characters / 4)").line(mfu, peak)
