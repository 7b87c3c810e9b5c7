"""Data-parallel fine-tuning with two CPU processes (gloo; torchrun starts the ranks, accelerate picks them up, as
under ``accelerate launch`` on GPUs) gives the model one process trains with the same global batch. FSDP is not exercised here: accelerate turns FSDP on only for GPU distributed
types (on CPU it runs plain DDP), so the sharded path waits for the gpu-marked tests."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from encore.rm.backbone import Encoder
from encore.data.demo import load_demo
from encore.rm.finetune import Finetune
from encore.rm.model import MultiHeadRM
from encore.rm.tiny import tiny_causal_config

from conftest import ROOT

TRAIN = dict(lr=1e-3, global_batch=16, batch_size=8, max_steps=3, val_frac=0.0, warmup_ratio=0.0, progress=False,
             save_every=100)


def setup():
    enc = Encoder("tiny-llama", tokenizer="tiny-bpe", config=tiny_causal_config("llama"), pooling="last",
                  text_format="chat", device="cpu", dtype="float32", max_length=96)
    pairs = load_demo("train").iloc[:48]
    y = np.random.default_rng(0).uniform(size=(48, 2, 3))
    return enc, pairs, y


def two_ranks(cache, *args: str, port: int = 29517) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="true", ACCELERATE_MIXED_PRECISION="no")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "tests" / "workers" / "ddp_finetune.py"), str(cache), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_gloo_processes_train_the_model_one_process_trains(tmp_path):
    enc, pairs, y = setup()
    one = MultiHeadRM.load(Finetune(**TRAIN).train_model(enc, pairs, y, "mse", tmp_path / "one", "k"))
    out = two_ranks(tmp_path / "two")
    assert out.returncode == 0, out.stderr[-4000:]
    model_dir = tmp_path / "two" / "models" / "k"
    two = MultiHeadRM.load(model_dir)
    meta = pd.read_json(model_dir / "encore.json", typ="series")
    assert meta["strategy"] == "ddp" and meta["processes"] == 2  # really two ranks
    for (name, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items()):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)  # same steps, reductions in another order
    moved = (one.heads.weight - Finetune(**TRAIN)._new_rm(enc, 3).heads.weight).abs().max()
    assert moved > 1e-3  # the comparison is between trained models, not two untouched inits
    la = pd.read_csv(tmp_path / "one" / "models" / "k" / "train_log.csv")["loss"]
    lb = pd.read_csv(model_dir / "train_log.csv")["loss"]  # mean of the two ranks' losses
    np.testing.assert_allclose(la, lb, rtol=1e-4)

    # Preempted at micro-step 5 with checkpoints after every optimiser step: both ranks resume from the checkpoint
    # of micro-step 4 (each rank's RNG state, the optimiser and the scheduler included) and end where the
    # uninterrupted run ended.
    killed = two_ranks(tmp_path / "killed", "--die-at", "5", "--save-every", "1", port=29518)
    assert killed.returncode != 0 and "killed at micro-step 5" in killed.stderr
    assert (tmp_path / "killed" / "checkpoints" / "k" / "LATEST").read_text() == "step-00000004"
    resumed = two_ranks(tmp_path / "killed", "--save-every", "1", port=29519)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    again = MultiHeadRM.load(tmp_path / "killed" / "models" / "k")
    for (name, a), (_, b) in zip(two.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_training_ranks_never_rate_they_name_the_command_that_does(tmp_path, cache, monkeypatch):
    """Under accelerate launch every rank runs the pipeline; a missing rating must stop them all with the rating
    command instead of loading the rater on one rank's GPU. With the ratings cached, the ranks read them."""
    import encore.run.pipeline as pipeline
    from encore.run.pipeline import run_rate
    from encore.rating.engine import NotRated

    from conftest import make_cfg

    class TwoRanks:
        num_processes, is_main_process = 2, True

    cfg = ["rater=hf_tiny", "data=demo", "data.limit=6"]
    monkeypatch.setattr(pipeline, "PartialState", TwoRanks)
    with pytest.raises(NotRated, match="experiments/rate.py"):
        run_rate(make_cfg(*cfg, cache=cache), tmp_path / "rank")
    monkeypatch.undo()
    run_rate(make_cfg(*cfg, cache=cache), tmp_path / "one")  # one process rates
    monkeypatch.setattr(pipeline, "PartialState", TwoRanks)
    assert run_rate(make_cfg(*cfg, cache=cache), tmp_path / "rank")["rating"]["n_new"] == 0


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_sharded_runs_refuse_the_8bit_optimiser_and_name_the_fix(strategy):
    """FSDP cannot checkpoint torchao's 8-bit state and upcasts bf16 weights (no stochastic rounding left); DeepSpeed
    brings its own optimiser. Refused when placing, before a weight is read; data parallel keeps the recipe."""
    from encore.scale.distributed import check_combination

    with pytest.raises(ValueError, match="train.optim=adamw_8bit under .*train.optim=adamw"):
        check_combination(strategy, 0, "adamw_8bit")
    check_combination("ddp", 0, "adamw_8bit")
    check_combination(strategy, 0, "adamw")


def test_the_reward_model_shows_accelerate_its_embedding_and_final_norm():
    """accelerate's FSDP2 preparation shards ``model.get_input_embeddings()`` as its own unit and the final norm it
    finds under ``base_model_prefix`` with the tail; asked through accelerate's own lookup."""
    from accelerate.utils.fsdp_utils import _find_final_norm

    enc, _, _ = setup()
    rm = Finetune(**TRAIN)._new_rm(enc, 3)
    assert rm.get_input_embeddings() is rm.backbone.embed_tokens
    assert rm.get_output_embeddings() is None
    assert _find_final_norm(rm) is rm.backbone.norm


def test_after_training_each_rank_scores_only_its_share_of_the_pairs(monkeypatch):
    """Rank 1 of 2 scores pairs 1, 3, 5, ... and receives the rest from rank 0 through gather_object (here the other
    rank's share is what one process computes); the assembled array is the one-process array."""
    import accelerate.utils

    import encore.rm.finetune as ft_mod

    enc, pairs, _ = setup()
    pairs = pairs.iloc[:7]
    ft = Finetune(**TRAIN)
    rm = ft._new_rm(enc, 3)
    whole = ft._score_pairs(rm, enc, pairs, True)  # one process: every pair
    seen = []
    real_score = ft_mod.score_ids
    monkeypatch.setattr(ft_mod, "score_ids", lambda rm, tok, ids, bs: seen.append(len(ids)) or real_score(rm, tok, ids, bs))

    class Rank1:
        num_processes, process_index = 2, 1

    rank0 = (np.arange(0, 7, 2), whole[0::2])
    monkeypatch.setattr(ft_mod, "PartialState", Rank1)
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda mine: [rank0, *mine])
    np.testing.assert_allclose(ft._score_pairs(rm, enc, pairs, True), whole, rtol=1e-6, atol=1e-7)
    assert seen == [2 * 3]  # pairs 1, 3, 5: both responses each


def test_micro_batches_weigh_every_window_to_its_mean_on_any_world_size():
    """33 pairs, 4 per process: on 2 processes the 5th batch of an epoch holds one pair, so rank 1 runs a weight-0
    pair; the last window (micro-step 9 of 9 with accumulation 2) still steps. After the trainer's division by A and
    the mean over n processes, the weights of each window's entries sum to 1: the gradient of the window's mean."""
    from encore.rm.batches import MicroBatches

    w = np.random.default_rng(0).integers(0, 4, size=40).astype(float)  # rated entries per pair, some none
    for n in (1, 2, 3):
        plan = MicroBatches(np.arange(33), w, 4, n, 2, 0, 2.0, None)
        totals: dict[int, float] = {}
        for m in range(plan.micro_steps):
            for r in range(n):
                idx, factor = plan.part(m, r)
                assert len(idx) > 0  # every process joins the reduction
                totals[m // 2] = totals.get(m // 2, 0.0) + factor * w[idx].sum() * (factor > 0) / (n * 2)
        assert all(abs(t - 1) < 1e-12 for t in totals.values()), (n, totals)
        assert plan.is_boundary(plan.micro_steps - 1)
    plan = MicroBatches(np.arange(33), w, 4, 2, 2, 0, 2.0, None)
    assert plan.micro_steps == 10 and len(plan.chunk(4)) == 1 and plan.part(4, 1)[1] == 0.0


def test_a_launch_accelerate_did_not_join_stops_before_training(monkeypatch):
    """torchrun started 2 processes but accelerate sees 1 (a bare PartialState() on CPU ignores ACCELERATE_USE_CPU):
    each would train alone into the same checkpoint directory."""
    from accelerate.utils import DistributedType

    from encore.scale.distributed import runtime_strategy

    class Alone:
        num_processes, distributed_type = 1, DistributedType.NO

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="WORLD_SIZE.*ACCELERATE_USE_CPU"):
        runtime_strategy(Alone())
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert runtime_strategy(Alone()) == ("single", 1)
