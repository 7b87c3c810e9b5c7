"""Which GPUs a process reads and how many machines a launch spans: a two-node launch (16 processes on 2 x 8 GPUs)
is placed as accelerate's launcher starts it, and a rank reading free memory touches only its own GPU. CUDA is
replaced by a recorder of the devices touched (no GPU here): what it proves is which devices our code asks about,
not what the driver does when asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from encore.scale.distributed import machines_from_file, strategy_from_file
from encore.scale.hardware import GB, Gpus, detect, parse_gpus, plan_peak
from encore.scale.loading import target_gpus
from encore.run.pipeline import build
from encore.node.plan import format_plan, plan_experiment

from conftest import CONF


class FakeCuda:
    """``n`` visible 80 GB H100s; records every device whose free memory was read (each read opens a context)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int = 8):
        self.touched: list[int] = []
        props = SimpleNamespace(total_memory=80 * GB, name="NVIDIA H100 80GB HBM3")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
        monkeypatch.setattr(torch.cuda, "mem_get_info", self.mem_get_info)

    def mem_get_info(self, device: int) -> tuple[int, int]:
        self.touched.append(device)
        return 79 * GB, 80 * GB


def two_node_world(monkeypatch: pytest.MonkeyPatch, rank: int = 0) -> None:
    """The environment torchrun gives global rank ``rank`` of 2 machines x 8 processes."""
    for k, v in {"WORLD_SIZE": 16, "LOCAL_WORLD_SIZE": 8, "RANK": rank, "LOCAL_RANK": rank % 8}.items():
        monkeypatch.setenv(k, str(v))


def paper(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=paper_main_table", *overrides])


def test_a_rank_reads_free_memory_on_its_own_gpu_only(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert detect(free=True).count == 8 and cuda.touched == [3]
    monkeypatch.delenv("LOCAL_RANK")  # one process spreading a model over every visible GPU reads them all
    cuda.touched.clear()
    assert detect(free=True).count == 8 and cuda.touched == list(range(8))
    cuda.touched.clear()
    assert detect().memory == 80 * GB and cuda.touched == []  # totals open no context


def test_rank_0_of_a_two_node_launch_places_its_share_of_16_processes(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    two_node_world(monkeypatch, rank=0)
    gpus = target_gpus("cuda")  # what finetune.train_model asks on every rank
    assert (gpus.count, gpus.nodes, cuda.touched) == (8, 2, [0])
    cfg = paper("train=finetune")
    place = build(cfg.train).placement(build(cfg.model), gpus, "fsdp", 16)
    assert place.fits, place.summary()
    # 16 processes on one 8-GPU machine do not fit, and the fix names the per-machine limit
    alone = build(cfg.train).placement(build(cfg.model), Gpus(8, 80 * GB, "t"), "fsdp", 16)
    assert not alone.fits and "at most 8 processes per machine" in alone.fix


def test_two_machine_accelerate_config_plans_16_processes_over_2_nodes(tmp_path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    two = yaml.safe_load((CONF / "accelerate" / "fsdp.yaml").read_text()) | {"num_machines": 2, "num_processes": 16,
                                                                             "main_process_ip": "10.0.0.1"}
    path = tmp_path / "fsdp_2nodes.yaml"
    path.write_text(yaml.safe_dump(two))
    assert strategy_from_file(path) == ("fsdp", 16) and machines_from_file(path) == 2
    args = launch_command_parser().parse_args(["--config_file", str(path), "experiments/train_rm.py"])
    args, _, _ = _validate_launch_command(args)
    prepare_multi_gpu_env(args)  # accelerate's own launcher: 16 in total, 8 per machine
    assert (args.num_processes, args.nproc_per_node, args.nnodes) == (16, "8", "2")
    p = plan_experiment(paper("train=finetune", "plan.gpus=8x80GB", f"plan.accelerate_config={path}"))
    train = next(s for s in p["stages"] if s["stage"] == "train")
    assert train["fits"] and "16 process(es)" in train["model"], train


def test_named_gpus_carry_the_memory_torch_reports_and_their_bf16_peak():
    h100 = parse_gpus("8xH100")
    assert (h100.count, h100.memory, h100.peak_tflops, h100.name) == (8, 81082 * 2 ** 20, 989.0, "H100")
    assert "total_memory" in h100.memory_from and "81082" in h100.memory_from  # where the figure comes from
    assert parse_gpus("2xH200").memory == 143156 * 2 ** 20 and parse_gpus("1xA100").peak_tflops == 312.0
    assert parse_gpus("1xA100").memory == 81049 * 2 ** 20
    assert "inferred" in parse_gpus("1xL40S").memory_from  # no public torch figure: said so
    bare = parse_gpus("8x80GB")
    assert bare.peak_tflops is None and bare.memory == 80 * GB and "decimal" in bare.memory_from
    assert parse_gpus("8x79.11GiB").memory == int(79.11 * 2 ** 30) and "binary" in parse_gpus("8x79.11GiB").memory_from
    with pytest.raises(ValueError, match="COUNTxNAME of a known GPU"):
        parse_gpus("8xGTX9000")


def test_the_plans_peak_is_named_assumed_for_a_bare_size_or_asked_for():
    """Hours need a peak: a named GPU's; for a bare size the GPU assumed for it, said so; else one line asking."""
    assert plan_peak(parse_gpus("8xH100")) == (989.0, "the H100's")
    assert plan_peak(parse_gpus("8x80GB")) == (989.0, "assumed H100 for 80 GB GPUs; name the type for another, e.g. "
                                                      "plan.gpus=8xA100 for the A100's 312")
    assert plan_peak(parse_gpus("4x141GB"))[0] == 989.0 and plan_peak(parse_gpus("8x80GB"), 312)[0] == 312.0
    peak, ask = plan_peak(parse_gpus("8x24GB"))
    assert peak is None and ask.startswith("hours need the GPU type: name it (plan.gpus=8xH100)") and "\n" not in ask


def test_8bit_adamw_under_fsdp_is_refused_with_the_recipes_that_work():
    cfg = paper("train=finetune_1gpu")
    with pytest.raises(ValueError, match="train.optim=adamw_8bit under FSDP.*conf/accelerate/ddp.yaml"):
        build(cfg.train).placement(build(cfg.model), Gpus(8, 80 * GB, "t"), "fsdp", 8)
    assert build(cfg.train).placement(build(cfg.model), Gpus(8, 80 * GB, "t"), "ddp", 8).fits


def test_a_named_h100_is_planned_with_the_figure_the_run_detects(monkeypatch):
    """``plan.gpus=8xH100`` and ``plan.gpus=8x79.11GiB`` (what torch reports for an H100 80GB) give the same tensor
    parallel size, and :func:`detect` on 8 cards reporting the H100's figure gives the plan's memory, so the vLLM
    placement (one function, :func:`encore.scale.tensor_parallel.place_vllm`) decides the same at plan and at run time.
    The CUDA stand-in proves which figure our code reads, not what a driver reports."""
    def rate_line(gpus: str) -> tuple:
        p = plan_experiment(paper("rater=vllm", f"plan.gpus={gpus}"))
        rate = next(s for s in p["stages"] if s["stage"] == "rate")
        return rate["tensor_parallel"], rate["replicas"].split(" (")[0]

    assert rate_line("8xH100") == rate_line("8x79.11GiB")
    props = SimpleNamespace(total_memory=parse_gpus("8xH100").memory, name="NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    got, named = detect(), parse_gpus("8xH100")
    assert (got.count, got.memory, got.peak_tflops) == (named.count, named.memory, named.peak_tflops)
    out = format_plan(plan_experiment(paper("rater=vllm", "plan.gpus=8x80GB")))
    assert "decimal GB: 80 x 10^9 bytes" in out  # a bare size says what it assumes
