"""What the plan knows of the data: rating prompts and prefill tokens counted on the data when it can be read here
(the rater's tokenizer, exact up to ``plan.sample`` responses), else, for hub data offline, ESTIMATED from
``plan.estimates`` (conf/plan.yaml: pairs and characters per text for each hub dataset, each with where its numbers
come from), and said so in every line that uses them, so the plan prints hours on a machine without the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig


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


def data_summary(cfg: DictConfig, rules: list, prompts: Any, sample: int | None, seed: int = 0,
                 estimates: Any = None) -> dict[str, Any]:
    """Rating prompts and prefill tokens the training data implies, with and without the shared-prefix reuse that
    ``rater=hf`` and vLLM's prefix cache both exploit. Token counts come from the rater's tokenizer on every response
    (exact) when there are at most ``sample`` of them (``plan.sample``; None: always), else on a sample (the 50
    longest by characters and the rest at random, totals scaled up; the result says "sampled"); from characters / 4
    on every response when the tokenizer cannot be read here."""
    from encore.run.pipeline import build

    if _needs_hub(cfg.data) and offline_unless_reachable():
        return estimated_summary(cfg, len(rules), estimates, "hub not reachable from here; set data.path (or "
                                 "data.parts.*.path) to local copies to count prompts and tokens")
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
        chars = np.array([len(p) + len(x) + TEMPLATE_CHARS for p, x in texts], float)  # + template and rule
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


TEMPLATE_CHARS = 400  # a rule prompt's template and rule text, in characters, beside the conversation


def _hub_leaves(node: Any) -> list[Any]:
    """The hub-read parts of a data config (itself, or each of ``parts``)."""
    if not isinstance(node, DictConfig):
        return []
    if node.get("hub_id") and not node.get("path"):
        return [node]
    return [leaf for k, v in node.items() if k == "parts" or isinstance(v, DictConfig) for leaf in _hub_leaves(v)]


def _estimate_for(leaf: Any, estimates: Any) -> Any:
    for e in estimates or []:
        if e.get("hub_id") == leaf.get("hub_id") and e.get("split") == leaf.get("split") \
                and e.get("data_dir") == leaf.get("data_dir"):
            return e
    return None


def estimated(node: Any, estimates: Any) -> list[tuple[int, float, int, str]] | str:
    """(pairs, characters per text, longest characters, where from) per hub part of ``node``; a string naming the
    first part no estimate covers."""
    out = []
    for leaf in _hub_leaves(node):
        e = _estimate_for(leaf, estimates)
        if e is None:
            return (f"{leaf.get('hub_id')} ({leaf.get('data_dir') or ''} {leaf.get('split')}) has no entry in "
                    "plan.estimates; set data.path to a local copy to count it")
        n = int(e["pairs"]) if leaf.get("limit") is None else min(int(e["pairs"]), int(leaf.get("limit")))
        out.append((n, float(e["chars_per_text"]), int(e["longest_chars"]), f"{e['hub_id']}: {e['from']}"))
    return out


def estimated_eval(node: Any, estimates: Any) -> tuple[int, float, str] | None:
    """(pairs, characters per pair: prompt and both responses, where from) of hub evaluation data, or None."""
    parts = estimated(node, estimates)
    if isinstance(parts, str) or not parts:
        return None
    n = sum(p[0] for p in parts)
    chars = sum(p[0] * p[1] for p in parts) / max(n, 1)
    return n, 2 * chars, "ESTIMATE: " + "; ".join(p[3] for p in parts)


def estimated_summary(cfg: DictConfig, n_rules: int, estimates: Any, reason: str) -> dict[str, Any]:
    """:func:`data_summary`'s numbers from ``plan.estimates`` for hub data, as characters / 4 with the rule template
    (the same formula as data whose tokenizer is not readable); unreadable (``reason``) without an estimate."""
    parts = estimated(cfg.data, estimates)
    if isinstance(parts, str):
        return {"readable": False, "reason": f"{reason}; {parts}"}
    n_pairs = sum(p[0] for p in parts)
    n_texts, K = 2 * n_pairs, n_rules
    per = sum(p[0] * p[1] for p in parts) / max(n_pairs, 1) + TEMPLATE_CHARS  # characters of one rule prompt
    full, shared = K * per / 4, per / 4 - 15
    return {"readable": True, "estimated": True, "n_pairs": n_pairs, "n_texts": n_texts, "n_rules": K,
            "n_prompts": n_texts * K, "prefill_tokens": int(n_texts * full),
            "prefill_tokens_prefix_reuse": int(n_texts * (full - (K - 1) * shared)),
            "longest_prompt_tokens": int((max(p[2] for p in parts) + TEMPLATE_CHARS) / 4),
            "longest_from": "estimated", "text_tokens_mean": (per - TEMPLATE_CHARS) / 4,
            "tokens_from": "ESTIMATE, not counted (" + reason.split(";")[0] + "): characters / 4 from plan.estimates "
                           "(conf/plan.yaml): " + "; ".join(p[3] for p in parts) + "; set data.path for exact counts"}
