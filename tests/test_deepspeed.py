"""The ZeRO-3 recipe (conf/accelerate/deepspeed_zero3.yaml) as far as it runs without CUDA and without DeepSpeed:
the DeepSpeed plugin is built from the environment accelerate's own launcher derives from the config file, and
accelerate's real ``_prepare_deepspeed`` processes it up to the call into ``deepspeed.initialize``, which a
recorder stands in for. Proven: the config DeepSpeed would receive has no ``auto`` left and the batch, accumulation
and clipping of the run. Not proven here: DeepSpeed's engine itself (its ZeRO-3 partitioning, training and the
16-bit gather on save), which needs GPUs."""

import sys
import types

import pytest
import torch

from encore.scale.distributed import fill_deepspeed_config
from encore.rm.finetune import Finetune

from conftest import CONF


class Initialised(Exception):
    """Raised by the recorder in place of deepspeed.initialize, carrying what accelerate handed it."""


class AsLaunched:
    """The running Accelerator as ``accelerate launch --config_file deepspeed_zero3.yaml`` on 8 GPUs presents it:
    DeepSpeed type, 8 processes, the plugin from the launch environment; everything else is the real CPU one."""

    def __init__(self, acc, plugin, processes: int):
        from accelerate.utils import DistributedType

        self._acc, self.deepspeed_plugin, self.num_processes = acc, plugin, processes
        self.distributed_type = DistributedType.DEEPSPEED

    def __getattr__(self, name):
        return getattr(self._acc, name)


@pytest.fixture
def launched(monkeypatch):
    from accelerate import Accelerator
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args(["--config_file", str(CONF / "accelerate" / "deepspeed_zero3.yaml"),
                                               "experiments/train_rm.py"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    for k, v in env.items():
        if k.startswith("ACCELERATE_DEEPSPEED") or k == "ACCELERATE_GRADIENT_CLIPPING":
            monkeypatch.setenv(k, v)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 3 and plugin.is_auto("train_micro_batch_size_per_gpu")  # as the launcher leaves it
    seen = {}

    def initialize(**kwargs):
        seen.update(kwargs)
        raise Initialised

    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(initialize=initialize))
    import accelerate.accelerator
    import accelerate.utils.deepspeed as ds_utils

    for name in ("DummyOptim", "DummyScheduler"):  # accelerate's own classes, imported there when DeepSpeed is
        monkeypatch.setattr(accelerate.accelerator, name, getattr(ds_utils, name), raising=False)
    acc = Accelerator(cpu=True, gradient_accumulation_steps=8)
    return AsLaunched(acc, plugin, 8), seen


def model_and_optimiser():
    rm = torch.nn.Linear(64, 3)
    return rm, torch.optim.AdamW(rm.parameters(), lr=2e-5)


def test_accelerate_cannot_prepare_zero3_without_a_dataloader_unless_the_batch_is_filled(launched):
    from accelerate import Accelerator

    acc, seen = launched
    with pytest.raises(ValueError, match="requires you to pass at least one of training or evaluation dataloaders"):
        Accelerator._prepare_deepspeed(acc, *model_and_optimiser())
    ft = Finetune(global_batch=256, batch_size=4, max_grad_norm=0.5)
    assert ft.split(acc.num_processes) == (4, 8)  # 256 pairs over 8 processes: 4 per micro-step x 8 accumulation steps
    fill_deepspeed_config(acc, ft.split(acc.num_processes)[0], ft.max_grad_norm, hidden_size=64)
    with pytest.raises(Initialised):
        Accelerator._prepare_deepspeed(acc, *model_and_optimiser())
    cfg = seen["config_params"]
    assert "auto" not in repr(cfg)
    assert (cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"], cfg["train_batch_size"]) == (4, 8, 4 * 8 * 8)
    assert cfg["gradient_clipping"] == 0.5  # train.max_grad_norm, not accelerate's default 1.0
    assert cfg["zero_optimization"]["stage"] == 3 and cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]


def test_numbers_the_deepspeed_config_sets_are_kept(launched):
    acc, _ = launched
    acc.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 2
    fill_deepspeed_config(acc, 4, 1.0, hidden_size=64)
    assert acc.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 2
    assert acc.deepspeed_plugin.deepspeed_config["train_batch_size"] == 2 * 8 * 8
