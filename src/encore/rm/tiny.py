"""Tiny random-weight causal LMs and their tokenizers, for offline tests, dry runs and benchmarks (never downloads).

Tokenizers built here: ``tiny-bpe`` (byte-level BPE trained here, GPT-2 style, labels like "ĠYes") and
``tiny-wordpiece`` (the embedded MiniLM's lower-casing WordPiece vocabulary), both with a small chat template.
Real ones read from disk: ``shared:<folder>`` names a folder of the paper's tokenizers (``llama3-instruct``,
``llama31``: 128,256 tokens, no pad token, BOS from the chat template), looked up in ``$ENCORE_TOKENIZERS``, else
``../shared/tokenizers`` beside the repository, else ``../shared/tokenizers`` from the working directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]


def _corpus() -> list[str]:
    from encore.data.demo import load_demo
    from encore import prompts

    texts = [prompts.RULE_TEMPLATE, prompts.YES_NO_QUESTION, prompts.SCALE_QUESTION, prompts.JUDGE_TEMPLATE]
    for split in ("train", "eval"):
        d = load_demo(split)
        texts += list(d["prompt"]) + list(d["chosen"]) + list(d["rejected"])
    texts += ["Yes", "No", "A", "B", " Yes", " No"] * 50 + [str(i) for i in range(10)] * 50
    return texts


@lru_cache(maxsize=None)
def tokenizer_dir(name: str) -> str:
    """The directory of a tiny tokenizer, built once into the artefact cache (``$ENCORE_CACHE_DIR/tokenizers/``,
    keyed by what it is built from) and reused by every later process; nothing is left in the system temp dir."""
    import transformers

    if name not in ("tiny-bpe", "tiny-wordpiece"):
        raise ValueError(f"unknown tiny tokenizer {name!r}; use tiny-bpe or tiny-wordpiece")
    from encore.cache.artifacts import content_hash

    root = Path(os.environ.get("ENCORE_CACHE_DIR", Path.home() / ".cache" / "encore")) / "tokenizers"
    out = root / f"{name}-{content_hash(name, _corpus(), SPECIAL, CHAT_TEMPLATE, transformers.__version__)}"
    if (out / "tokenizer_config.json").exists():
        return str(out)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=root))
    try:
        _build(name, tmp)
        os.rename(tmp, out)  # atomic; fails when another process got there first, whose copy is the same
    except OSError:
        if not (out / "tokenizer_config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _build(name: str, out: Path) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name == "tiny-bpe":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_corpus(), trainer)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>",
                                       pad_token="<|pad|>")
    else:  # tiny-wordpiece
        from encore.scale.paths import EMBEDDED_MINILM, resolve_model_path

        fast = AutoTokenizer.from_pretrained(resolve_model_path(EMBEDDED_MINILM))
        fast.add_special_tokens({"additional_special_tokens": SPECIAL[2:]})
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


SHARED = "shared:"


def shared_tokenizers_dir() -> Path | None:
    """The folder holding the real tokenizers, or None when this machine has none (see the module docstring)."""
    env = os.environ.get("ENCORE_TOKENIZERS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2].parent / "shared" / "tokenizers",
                   Path.cwd().parent / "shared" / "tokenizers"]
    return next((c for c in candidates if c.is_dir()), None)


def resolve_tokenizer(name_or_path: str) -> str:
    """``tiny-bpe`` / ``tiny-wordpiece``: the directory built here; ``shared:<folder>``: that real tokenizer's
    directory (an error naming the fix when it is absent); anything else passes through."""
    if name_or_path in ("tiny-bpe", "tiny-wordpiece"):
        return tokenizer_dir(name_or_path)
    if not name_or_path.startswith(SHARED):
        return name_or_path
    root = shared_tokenizers_dir()
    folder = root / name_or_path[len(SHARED):] if root else None
    if folder is None or not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"tokenizer {name_or_path!r}: no {name_or_path[len(SHARED):]}/tokenizer.json under "
                                f"{root or '../shared/tokenizers'}; set ENCORE_TOKENIZERS to the folder that holds "
                                "llama3-instruct/ and llama31/")
    return str(folder)


def tiny_causal_config(model_type: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 4,
                       max_positions: int = 2048, intermediate: int | None = None, kv_heads: int | None = None) -> dict:
    """A config dict for ``AutoConfig.for_model`` (vocab size is filled in from the tokenizer); head_dim is
    hidden / heads, the MLP ``intermediate`` (default 2 · hidden) wide, ``kv_heads`` (default heads / 2) K/V heads."""
    if model_type == "gpt2":
        return {"model_type": "gpt2", "n_embd": hidden, "n_layer": layers, "n_head": heads, "n_positions": max_positions}
    return {"model_type": model_type, "hidden_size": hidden, "intermediate_size": intermediate or 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads or max(1, heads // 2), "max_position_embeddings": max_positions}


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
