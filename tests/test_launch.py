"""The multi-process recipe end to end through the Hydra runners, as a user types it, on CPU: rate with
``experiments/rate.py``, fine-tune with ``experiments/train_rm.py`` under ``torchrun`` (2 gloo processes, which
accelerate joins as under ``accelerate launch`` on GPUs), killed after a checkpoint and relaunched, then
``experiments/reproduce.py`` from the caches. The data size (37 pairs, 33 trained) divides neither by the global batch
nor by the world size, and the last accumulation window is short: the two-process model must still be the
one-process model. Not covered here: FSDP and DeepSpeed (accelerate runs them only on GPUs) and NCCL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT

COMMON = ["rater=hf_tiny", "data=demo", "data.limit=37", "model=tiny_decoder", "logger=none", "method=encore",
          "stats.n_boot=39", "stats.n_perm=50"]
OPTS = ["train.progress=false", "train.save_every=1", "train.global_batch=16", "train.val_frac=0.1", "train.lr=1e-3"]


def _env(cache):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="offline", ACCELERATE_USE_CPU="true",
                ACCELERATE_MIXED_PRECISION="no", ENCORE_CACHE_DIR=str(cache))


def _cmd(script, run_dir, *args, ranks=1, port=29530):
    launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                                    str(ranks), "--master_port", str(port)]
    return [*launcher, str(ROOT / "experiments" / script), *COMMON, *args, f"hydra.run.dir={run_dir}"]


def _run(cache, cmd):
    out = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout + out.stderr


def _preempted(cache, cmd):
    """Start the launch, kill its whole process group (launcher and ranks) once a checkpoint of its own is complete
    (an earlier recipe's checkpoints and models in the cache do not count)."""
    checkpoints = lambda: set((cache / "checkpoints").glob("*/LATEST"))  # noqa: E731
    models = lambda: set((cache / "models").glob("*/encore.json"))  # noqa: E731
    before, had = checkpoints(), models()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 300
    while not checkpoints() - before:
        assert proc.poll() is None, f"the launch ended before its first checkpoint: {proc.stderr.read()[-3000:]}"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert models() == had  # stopped before the model was written


def _scores(run_dir):
    return pd.read_parquet(run_dir / "head_scores.parquet")["score"].to_numpy()


# The two recipes: the fp32 fine-tune (two ranks agree with one process up to reduction order) and the one-GPU recipe
# (bf16 weights, torchao AdamW8bit with stochastic rounding, seeded alike on every rank: agreement up to bf16 rounding).
RECIPES = {"finetune": (["train=finetune"], 2e-5),
           "finetune_1gpu": (["train=finetune_1gpu", "train.gradient_checkpointing=false"], 5e-2)}


@pytest.mark.slow
def test_both_recipes_preempted_and_relaunched_on_two_ranks_train_the_one_process_model(tmp_path):
    """Each recipe on two ranks, killed after a checkpoint and relaunched, trains the model one process trains at the
    same global batch (in a cache of its own: this one would hand it the launch's model, the key holds the global
    batch); then reproduce.py at the launch's global batch reads the launch's model. One rating for both recipes."""
    cache = tmp_path / "cache"
    _run(cache, _cmd("rate.py", tmp_path / "rate"))
    shutil.copytree(cache / "ratings", tmp_path / "cache_one" / "ratings")  # the same ratings, no model
    port = 29530
    for name, (recipe, atol) in RECIPES.items():
        train = [*recipe, *OPTS, "train.epochs=2"]
        before = set((cache / "models").glob("*/encore.json"))
        _preempted(cache, _cmd("train_rm.py", tmp_path / f"killed-{name}", *train, "train.batch_size=4", ranks=2,
                               port=port))
        resumed = _run(cache, _cmd("train_rm.py", tmp_path / f"two-{name}", *train, "train.batch_size=4", ranks=2,
                                   port=port + 1))
        port += 2
        assert "resuming" in resumed
        (model,) = set((cache / "models").glob("*/encore.json")) - before
        meta = json.loads(model.read_text())
        assert (meta["strategy"], meta["processes"]) == ("ddp", 2)
        log = pd.read_csv(model.parent / "train_log.csv")
        assert log["micro_step"].tolist() == list(range(10))  # 5 global batches per epoch (the last of 1 pair) x 2
        assert log["lr"].dtype == float
        _run(tmp_path / "cache_one", _cmd("train_rm.py", tmp_path / f"one-{name}", *train, "train.batch_size=8"))
        one, two = _scores(tmp_path / f"one-{name}"), _scores(tmp_path / f"two-{name}")
        assert one.std() > 0.05
        np.testing.assert_allclose(two, one, atol=atol)  # same model; reductions in another order / bf16 rounding

    # one process at the same train.global_batch reads the model the fp32 two-rank launch trained: the key holds
    # the global batch, not the processes or the micro-batch that made it up
    train = [*RECIPES["finetune"][0], *OPTS, "train.epochs=2", "train.batch_size=2"]
    rep = _run(cache, _cmd("reproduce.py", tmp_path / "rep", *train))
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["rating"]["n_new"] == 0 and metrics["heads"]["head_scores_cached"]  # nothing recomputed
    assert "fine-tuning" not in rep
    np.testing.assert_allclose(_scores(tmp_path / "rep"), _scores(tmp_path / "two-finetune"))
    assert (tmp_path / "rep" / "main_table.csv").exists()


@pytest.mark.slow
def test_a_global_batch_the_ranks_cannot_share_is_refused_by_every_rank_before_anything_loads(tmp_path):
    """Two gloo ranks through train_rm.py at train.global_batch=3: each stops with one message naming the setting,
    the world size and the process counts that work, no traceback, and nothing written to the cache."""
    cache = tmp_path / "cache"
    cmd = _cmd("train_rm.py", tmp_path / "run", "train=finetune", "train.global_batch=3", ranks=2, port=29560)
    out = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "train.global_batch=3 on 2 processes" in out.stderr and "launch 1, 3 process(es)" in out.stderr
    assert "[rank0]: Traceback" not in out.stderr and "[rank1]: Traceback" not in out.stderr  # torchrun's own follows
    assert out.stderr.count("Error executing job") == 2  # each rank: Hydra's one line and our message
    assert not (cache / "models").exists() and not (cache / "ratings").exists()
