"""How slurm/rate_vllm_server.sbatch splits a node into `vllm serve` copies (encore.node.serve_layout): the same
tensor-parallel size rater=vllm picks in process, as many copies as the GPUs hold, each on its own block of the job's
devices. The GPU counts are stated (plan.gpus-style), so this runs on any machine; it does not prove the servers start
on those GPUs (the recipe's real-server run is in tests/test_vllm_engine.py, on the CPU build)."""

import pytest
import yaml

from conftest import ROOT
from encore.node.serve_layout import layout, main
from encore.scale.hardware import parse_gpus
from encore.scale.placement import DoesNotFit

MODEL = "meta-llama/Meta-Llama-3-70B-Instruct"
ARCH = yaml.safe_load((ROOT / "conf" / "arch" / "llama3_70b_instruct.yaml").read_text())


@pytest.mark.parametrize("gpus, tp, copies", [("8x80GB", 4, 2), ("8x141GB", 2, 4), ("4x80GB", 4, 1),
                                              ("8x32GB", 8, 1)])
def test_the_70b_rater_fills_the_node_with_copies_of_the_fewest_gpus_that_hold_it(gpus, tp, copies, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    t, blocks = layout(MODEL, 4096, gpus=parse_gpus(gpus), arch=ARCH)
    assert (t, len(blocks)) == (tp, copies)
    assert sum(blocks, []) == [str(i) for i in range(tp * copies)]  # disjoint blocks, in order


def test_blocks_are_the_jobs_own_devices(monkeypatch):
    """SLURM may hand the job GPUs 4-7 of a node: the copies are blocks of those ids, not of 0-3."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert layout(MODEL, 4096, gpus=parse_gpus("4x141GB"), arch=ARCH) == (2, [["4", "5"], ["6", "7"]])


def test_explicit_settings_win_and_impossible_ones_are_refused_with_the_fix(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    g = parse_gpus("8x80GB")
    assert layout(MODEL, 4096, tp="8", gpus=g, arch=ARCH)[0] == 8
    assert len(layout(MODEL, 4096, copies="1", gpus=g, arch=ARCH)[1]) == 1
    with pytest.raises(DoesNotFit, match=r"attention heads[\s\S]*fix: TP=4 \(or auto\)"):
        layout(MODEL, 4096, tp="3", gpus=g, arch=ARCH)
    with pytest.raises(DoesNotFit, match="COPIES=3: 8 GPU.s. hold 2 copies of tensor parallel 4"):
        layout(MODEL, 4096, copies="3", gpus=g, arch=ARCH)
    with pytest.raises(ValueError, match="COPIES=two: a whole number"):
        layout(MODEL, 4096, copies="two", gpus=g, arch=ARCH)


def test_command_line_prints_the_layout_or_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("encore.scale.hardware.detect", lambda *a, **k: parse_gpus("cpu"))
    assert main(["--model", "tiny", "--tp", "1", "--copies", "2"]) == 0  # unreadable config: TP trusted, said so
    out = capsys.readouterr()
    assert out.out.splitlines() == ["1 2", "", ""] and "TP=1 not checked against tiny" in out.err
    assert main(["--model", "tiny"]) == 2
    assert "set TP (and COPIES)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, tp, copies", [("", 4, 2), ("--gpu-memory-utilization 0.4", 8, 1),
                                               ("--dtype=float32", 8, 1), ("-tp 8", 8, 1),
                                               ("--enforce-eager --tensor_parallel_size=8 --port 9", 8, 1)])
def test_the_servers_own_flags_in_vllm_args_are_planned(extra, tp, copies, monkeypatch):
    """VLLM_ARGS comes last on each server's command line, so its memory, dtype and parallelism flags are the
    servers': the layout is planned with them (a server given less memory needs more GPUs per copy)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    t, blocks = layout(MODEL, 4096, gpus=parse_gpus("8x80GB"), arch=ARCH, extra=extra)
    assert (t, len(blocks)) == (tp, copies)


def test_command_line_reads_vllm_args_from_the_environment(capsys, monkeypatch):
    """python -m encore.node.serve_layout, as the recipe calls it: VLLM_ARGS from the environment (it was ignored)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("encore.scale.hardware.detect", lambda *a, **k: parse_gpus("cpu"))
    monkeypatch.setenv("VLLM_ARGS", "--max-num-seqs 8 --tensor-parallel-size 2")
    assert main(["--model", "tiny", "--tp", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "2 1"
    monkeypatch.setenv("VLLM_ARGS", "--gpu-memory-utilization lots")
    assert main(["--model", "tiny", "--tp", "1"]) == 2
    assert "VLLM_ARGS: --gpu-memory-utilization 'lots': not a valid value" in capsys.readouterr().err
