"""The shipped accelerate configs read by accelerate 1.15's own launcher and plugins: every FSDP option we set has
an effect under FSDP2 (accelerate drops options that FSDP2 made obsolete, silently when they come from a config
file), and the plugin ends with the sharding and state-dict type the memory plan and the checkpoints assume."""

import logging

import pytest

from conftest import CONF

FSDP_YAML = CONF / "accelerate" / "fsdp.yaml"
# config-file key -> FullyShardedDataParallelPlugin field, as accelerate's launcher maps them (FSDP_* variables)
FIELD = {"fsdp_offload_params": "cpu_offload", "fsdp_version": "fsdp_version"}


def test_every_fsdp_option_we_set_is_live_under_fsdp2(caplog, monkeypatch):
    import yaml
    from accelerate.utils import FullyShardedDataParallelPlugin

    for k in list(__import__("os").environ):
        if k.startswith("FSDP_"):
            monkeypatch.delenv(k)
    cfg = yaml.safe_load(FSDP_YAML.read_text())["fsdp_config"]
    assert cfg["fsdp_version"] == 2
    kwargs = {FIELD.get(k, k.removeprefix("fsdp_")): v for k, v in cfg.items()}
    with caplog.at_level(logging.WARNING, logger="accelerate"):
        plugin = FullyShardedDataParallelPlugin(**kwargs)
    dropped = [k for k, v in kwargs.items() if v is not None and getattr(plugin, k, None) is None]
    assert not dropped, f"options accelerate ignores under FSDP2: {dropped}"
    assert "obsolete" not in caplog.text and "not supported in FSDP2" not in caplog.text
    assert plugin.reshard_after_forward is True and "SHARDED_STATE_DICT" in str(plugin.state_dict_type)


@pytest.mark.parametrize("key", ["fsdp_sync_module_states", "fsdp_use_orig_params", "fsdp_backward_prefetch"])
def test_the_check_sees_an_obsolete_option(key, monkeypatch):
    """The check above would catch each FSDP1-only option if a config carried it."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, **{key.removeprefix("fsdp_"): "BACKWARD_PRE" if "prefetch" in key else True})
    assert getattr(plugin, key.removeprefix("fsdp_")) is None
