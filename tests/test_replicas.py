"""Every GPU of a node rating at once: as many rater copies as fit, each pinned to its own GPUs and rating one shard.
On CPU (no GPU here) two replica processes started by ``experiments/rate.py rating.replicas=2`` give the table one
process gives; the GPU arithmetic (which devices each copy gets) is tested on the plan's numbers. What stays unproven
here: two 70B copies loading side by side on a real node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from encore.scale.hardware import GB, Gpus
from encore.run.pipeline import build
from encore.node.replicas import commands, plan_for, rater_fill, replica_groups, shard_of

from conftest import CONF, ROOT
from test_pipeline import _env
from test_plan import LLAMA3_8B

TINY = ["rater=hf_tiny", "data=demo", "data.limit=30", "rating.chunk_size=8", "logger=none"]


def paper(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=paper_main_table", *overrides])


def test_the_70b_rater_fills_an_8_gpu_node_and_each_replica_is_told_the_batch(monkeypatch, tmp_path):
    """rater=hf at the ceiling rater.batch_size=8 needs 5 of 8 GPUs (one copy); batch 6 needs 4: two copies, so the
    placement picks 6, and each replica process, told rater.batch_size=6 and shown its 4 GPUs, places the same."""
    node = Gpus(8, 80 * GB, "t")
    hf = build(paper("rater=hf").rater)
    place, per, n = rater_fill(hf, node, 10)
    assert (place.batch, per, n) == (6, 4, 2)
    alone = rater_fill(hf, node, 10, setting=1)[0]  # one copy asked for: the ceiling fits it, on 5 GPUs
    assert (alone.batch, alone.n_gpus) == (8, 5)
    for told in (hf, build(paper("rater=hf", "rater.batch_size=6").rater)):  # a replica process: 4 GPUs, one copy
        assert (told.placement(Gpus(4, 80 * GB, "t")).batch, told.placement(Gpus(4, 80 * GB, "t")).n_gpus) == (6, 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("encore.scale.hardware.detect", lambda headroom=0.08, free=False: node)
    reps = plan_for(paper("rater=hf"))
    assert reps.groups == (("0", "1", "2", "3"), ("4", "5", "6", "7")) and reps.overrides == ("rater.batch_size=6",)
    argv = commands("experiments/rate.py", ["experiment=paper_main_table", "rater.batch_size=8"], reps, tmp_path)[0][0]
    assert argv[2:4] == ["experiment=paper_main_table", "rater.batch_size=6"]  # the user's ceiling replaced


def test_vllm_copies_times_tensor_parallel_fill_the_node():
    """rater=vllm, tensor_parallel_size=auto: the 70B on tensor parallel 4 x 2 copies on 80 GB GPUs, 2 x 4 copies on
    141 GB; an 8B on tensor parallel 1 x 8 copies; an explicit size is kept (2 on 141 GB: 4 copies)."""
    vllm = build(paper("rater=vllm").rater)
    assert [rater_fill(vllm, Gpus(8, gb * GB, "t"), 10)[1:] for gb in (80, 141)] == [(4, 2), (2, 4)]
    small = build(paper("rater=vllm", *LLAMA3_8B).rater)
    assert rater_fill(small, Gpus(8, 80 * GB, "t"), 10)[1:] == (1, 8)
    fixed = build(paper("rater=vllm", "rater.tensor_parallel_size=4").rater)
    assert rater_fill(fixed, Gpus(8, 141 * GB, "t"), 10)[1:] == (4, 2)
    assert replica_groups("auto", 2, 8).count == 4


def test_replicas_take_the_parents_visible_devices_and_refuse_too_many(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a,GPU-b,GPU-c,GPU-d")
    assert replica_groups(2, 2, 4).groups == (("GPU-a", "GPU-b"), ("GPU-c", "GPU-d"))
    assert replica_groups("auto", 3, 4).count == 1 and replica_groups("auto", 0, 0).groups == ((),)
    with pytest.raises(ValueError, match=r"rating.replicas=3: each replica needs 2 GPU\(s\), 4 are visible"):
        replica_groups(3, 2, 4)
    with pytest.raises(ValueError, match="rating.replicas='two'"):
        replica_groups("two", 2, 4)


def test_replica_commands_pin_gpus_and_nest_shards_inside_an_array_task(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    reps = replica_groups("auto", 4, 8)
    cmds = commands("experiments/rate.py", ["experiment=paper_main_table", "rating.shard=1", "rating.num_shards=3",
                                            "rating.replicas=auto"], reps, tmp_path, num_shards=3, shard=1)
    (a, env_a), (b, env_b) = cmds
    assert (env_a["CUDA_VISIBLE_DEVICES"], env_b["CUDA_VISIBLE_DEVICES"]) == ("0,1,2,3", "4,5,6,7")
    assert a[2:] == ["experiment=paper_main_table", "rating.replicas=1", "rating.num_shards=6", "rating.shard=2",
                     f"hydra.run.dir={tmp_path / 'replica_0'}"]
    assert b[5] == "rating.shard=3"
    # N array tasks x R replicas cover the N*R shards exactly once
    assert sorted(shard_of(i, 2, 3, s) for s in range(3) for i in range(2)) == [(6, k) for k in range(6)]


@pytest.mark.slow
def test_two_replica_processes_rate_the_table_one_process_rates(tmp_path):
    """Real processes through the runner, as the recipe starts them: ``rate.py rating.replicas=2`` starts two
    rate.py shard processes into one cache and assembles; one ``rating.replicas=1`` process with its own cache."""

    def run(args, cache):
        env = _env(cache) | {"ENCORE_RUNS_DIR": str(tmp_path / "runs")}
        out = subprocess.run([sys.executable, "experiments/rate.py", *TINY, *args], cwd=ROOT, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]

    run(["rating.replicas=2", f"hydra.run.dir={tmp_path / 'two'}"], tmp_path / "shared")
    run(["rating.replicas=1", f"hydra.run.dir={tmp_path / 'one'}"], tmp_path / "alone")
    logs = sorted(Path(tmp_path / "two").glob("replica_*.log"))
    parts = [json.loads((tmp_path / "two" / f"replica_{i}" / "metrics.json").read_text())["rating"] for i in (0, 1)]
    assembled = json.loads((tmp_path / "two" / "metrics.json").read_text())["rating"]
    assert len(logs) == 2 and [p["slice"]["shard"] for p in parts] == [0, 1] and all(p["n_new"] for p in parts)
    # the replicas' ratings are this run's new ones, not "from the cache" (issue 33)
    assert sum(p["n_new"] for p in parts) == assembled["n_new"] == 600 and assembled["n_cached"] == 0
    a = pd.read_parquet(tmp_path / "two" / "ratings.parquet")
    b = pd.read_parquet(tmp_path / "one" / "ratings.parquet")
    assert len(a) == 30 * 2 * 10 and a["value"].notna().all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_batch_size_auto_takes_the_largest_batch_that_keeps_the_most_copies():
    """rater.batch_size=auto (ceiling 64) on 8 x 141 GB: one GPU cannot hold the 141.1 GB of weights, two can, for
    batches with (141.1 + 13.42 b) / 2 + 2.35 b + 2.63 <= 129.7 GB usable, i.e. b <= 6: 4 copies of 2 GPUs at batch 6.
    Without a GPU the batch decides nothing about placement: 8."""
    auto = build(paper("rater=hf", "rater.batch_size=auto").rater)
    place, per, n = rater_fill(auto, Gpus(8, 141 * GB, "t"), 10)
    assert (place.batch, per, n) == (6, 2, 4)
    assert auto.placement(Gpus(0, 0, "cpu")).batch == auto.batch == 8
    with pytest.raises(ValueError, match="rater.batch_size='many': use a positive integer"):
        build(paper("rater=hf", "rater.batch_size=many").rater)
