"""A rating job without a GPU picks its processes x threads for the machine (:mod:`encore.scale.cpu_layout`), prints
the choice, and an explicit setting wins; ``rate.py``'s replicas follow it (:func:`encore.node.replicas.plan_for`).
The timing behind the choice is a benchmark (``bench=engines bench.layouts=[1x2,2x1] bench.background=2``), never a
timed test."""

import pytest
from hydra import compose, initialize_config_dir

from encore.node.replicas import plan_for
from encore.scale import cpu_layout
from encore.scale.cpu_layout import MIN_PARAMS, CpuLayout, choose

from conftest import CONF


def test_auto_is_one_single_threaded_process_per_core_for_a_real_model():
    assert choose(2) == CpuLayout(2, 1, "auto on 2 core(s): one single-threaded process per core, each its own shard")
    assert (choose(8, n_params=134_515_008).processes, choose(8, n_params=134_515_008).threads) == (8, 1)
    small = choose(4, n_params=MIN_PARAMS - 1)
    assert (small.processes, small.threads) == (1, 4) and "one process" in small.why


def test_an_explicit_setting_wins():
    assert (choose(8, replicas=2).processes, choose(8, replicas=2).threads) == (2, 4)  # the cores shared out
    assert (choose(8, replicas=2, threads=1).processes, choose(8, replicas=2, threads=1).threads) == (2, 1)
    assert (choose(8, threads=4).processes, choose(8, threads=4).threads) == (2, 4)  # OMP_NUM_THREADS=4
    assert choose(2, replicas="3").processes == 3
    with pytest.raises(ValueError, match="rating.replicas=0"):
        choose(2, replicas=0)
    assert cpu_layout.explicit_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert cpu_layout.explicit_threads({"OMP_NUM_THREADS": ""}) is None
    assert cpu_layout.explicit_threads({}) is None


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", *overrides])


def test_rate_py_on_a_cpu_starts_one_replica_per_core_for_smollm2_and_one_process_for_a_tiny_model(
        monkeypatch, capsys, smollm2):
    monkeypatch.setattr(cpu_layout, "usable_cores", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    reps = plan_for(_cfg("rater=smollm2"))
    assert reps.groups == ((), ()) and "CPU layout: 2 process(es) x 1 thread(s)" in capsys.readouterr().out
    assert plan_for(_cfg("rater=hf_tiny")).count == 1
    assert plan_for(_cfg("rater=smollm2", "rating.replicas=1")).count == 1  # explicit: this process alone
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert plan_for(_cfg("rater=smollm2")).count == 1  # two threads asked for: one process fills the two cores
    assert plan_for(_cfg("rater=vllm", "rater.model=smollm2")).count == 1  # vLLM binds its own threads
