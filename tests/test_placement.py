"""Placement decided before loading: parameter counts from configs on the meta device, the memory arithmetic, the
device decision with its fix, a model spread over devices (CPU plus disk offload here) rating exactly as on one
device, and cache keys that do not depend on where the layers sit."""

import numpy as np
import pytest
import yaml

from encore.scale.arch import config_from_dict, describe
from encore.data.demo import load_demo
from encore.scale.hardware import GB, Gpus, HardwareError, parse_gpus
from encore.scale.memory import kv_cache_bytes
from encore.scale.placement import DoesNotFit, TrainSetup, place_inference, place_training
from encore.rating.engine import rater_key
from encore.rating.hf import HFRater
from encore.rules import Rule

from conftest import CONF, save_tiny_llama

RULES = [Rule("a", "The response is polite."), Rule("b", "The response gives no instructions for violence.")]


def arch(name: str, head: str = "causal_lm"):
    rec = yaml.safe_load((CONF / "arch" / f"{name}.yaml").read_text())
    rec.pop("_name_or_path")
    return describe(config_from_dict(rec), name, "test", head)


def test_parameter_counts_match_the_known_sizes_of_the_papers_models():
    assert arch("llama3_70b_instruct").n_params / 1e9 == pytest.approx(70.55, abs=0.01)  # Llama-3-70B: 70.6 B
    assert arch("skywork_llama31_8b").n_params / 1e9 == pytest.approx(8.03, abs=0.01)  # Llama-3(.1)-8B: 8.03 B
    assert arch("skywork_llama31_8b", "base").n_params / 1e9 == pytest.approx(7.50, abs=0.01)  # no LM head
    a = arch("llama3_70b_instruct")
    assert a.kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2  # K and V, 80 layers, 8 KV heads of 128, bf16
    assert kv_cache_bytes(a, 1000, 2) == 1000 * 327_680


def test_gpu_descriptions_parse_and_bad_ones_name_the_fix():
    g = parse_gpus("8x80GB")
    assert (g.count, g.memory, g.usable) == (8, 80 * GB, int(80 * GB * 0.92))
    assert parse_gpus("2x141GiB").memory == 141 * 2 ** 30 and parse_gpus("auto") is None
    assert parse_gpus("cpu").count == 0
    with pytest.raises(HardwareError, match="plan.gpus=8x80GB"):
        parse_gpus("eight big ones")


def test_one_gpu_when_it_fits_else_the_fewest_that_hold_it_else_the_fix():
    a70, g = arch("llama3_70b_instruct"), parse_gpus("8x80GB")
    small = place_inference(arch("skywork_llama31_8b"), 2, 5 * GB, g, field="rater")
    assert small.fits and small.device_map == {"": 0} and small.n_gpus == 1
    spread = place_inference(a70, 2, 20 * GB, g, field="rater")
    assert spread.fits and spread.device_map == "auto" and spread.n_gpus == 3 and set(spread.max_memory) == {0, 1, 2}
    assert all(v <= g.usable - 20 * GB / 3 for v in spread.max_memory.values())  # room kept for KV and activations
    one = place_inference(a70, 2, 100 * GB, parse_gpus("1x80GB"), field="rater", batch_field="rater.batch_size",
                          batch=8)
    assert not one.fits and "plan.gpus=4x80GB" in one.fix and "rater.max_memory='{0:" in one.fix
    kv_only = place_inference(a70, 2, 113 * GB, parse_gpus("3x80GB"), field="rater", batch_field="rater.batch_size",
                              batch=8)
    b = int(kv_only.fix.split("rater.batch_size=")[1].split()[0])
    assert not kv_only.fits and place_inference(a70, 2, 113 * GB * b / 8, parse_gpus("3x80GB"), field="rater").fits


def test_training_memory_and_its_fixes():
    a8, one, eight = arch("skywork_llama31_8b", "base"), parse_gpus("1x80GB"), parse_gpus("8x80GB")
    base = dict(batch_size=8, grad_accum=4, max_length=2048, gradient_checkpointing=True)
    full = TrainSetup(param_dtype="float32", optim="adamw", strategy="single", processes=1, **base)
    p = place_training(a8, full, one)
    assert p.parts["weights"] + p.parts["gradients"] + p.parts["optimizer"] == 16 * a8.n_params  # 120 GB
    assert not p.fits and p.fix.startswith("train=finetune_1gpu")
    lowmem = TrainSetup(param_dtype="bfloat16", optim="adamw_8bit", strategy="single", processes=1,
                        **{**base, "batch_size": 4})
    q = place_training(a8, lowmem, one)
    assert q.fits and q.need / GB == pytest.approx(53.0, abs=0.1)  # the arithmetic in conf/train/finetune_1gpu.yaml
    fsdp = place_training(a8, TrainSetup(param_dtype="float32", optim="adamw", strategy="fsdp", processes=8, **base),
                          eight)
    assert fsdp.fits and fsdp.parts["weights"] == 4 * a8.n_params // 8
    assert "conf/accelerate/fsdp.yaml" in place_training(a8, full, Gpus(8, 40 * GB, "t")).fix


def test_a_model_that_cannot_fit_stops_before_reading_a_weight():
    rec = yaml.safe_load((CONF / "arch" / "llama3_70b_instruct.yaml").read_text())
    r = HFRater(model="meta-llama/Meta-Llama-3-70B-Instruct", arch=rec, device="cpu")
    with pytest.raises(DoesNotFit, match="host memory"):
        r.load()  # 282 GB in fp32 on this CPU: refused from the config alone, nothing downloaded


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny4"), layers=4)[0]


SPREAD = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.layers.2": "disk",
          "model.layers.3": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "disk"}


def test_spread_over_cpu_and_disk_rates_like_one_device_with_prefix_reuse(saved, tmp_path):
    pairs = load_demo("train").iloc[:8]
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    whole = HFRater(model=saved, device="cpu", dtype="float32", batch_size=3)
    spread = HFRater(model=saved, device="cpu", dtype="float32", batch_size=3, device_map=SPREAD,
                     offload_folder=str(tmp_path / "offload"))
    a, _ = whole.rate(*args)
    b, _ = spread.rate(*args)
    assert spread.prefix_reuse and set(spread._model.hf_device_map.values()) == {"cpu", "disk"}
    # disk-offloaded layers hold no weights in memory: they are read from the checkpoint file when they run
    assert spread._model.model.layers[1].self_attn.q_proj.weight.device.type == "meta"
    assert np.abs(a - b).max() < 1e-5
    ja, _ = whole.judge(list(pairs["prompt"]), list(pairs["chosen"]), list(pairs["rejected"]))
    jb, _ = spread.judge(list(pairs["prompt"]), list(pairs["chosen"]), list(pairs["rejected"]))
    assert np.abs(ja - jb).max() < 1e-5
    assert rater_key(whole) == rater_key(spread)  # same model, same ratings: same cache entry


def test_backbone_spread_over_cpu_and_disk_embeds_like_one_device(saved, tmp_path):
    from encore.rm.backbone import Encoder

    texts = list(load_demo("eval")["chosen"][:6])
    dmap = {"embed_tokens": "cpu", "layers.0": "disk", "layers.1": "cpu", "layers.2": "disk", "layers.3": "cpu",
            "norm": "cpu", "rotary_emb": "cpu"}
    a = Encoder(saved, pooling="last", device="cpu", dtype="float32").encode(texts)
    b = Encoder(saved, pooling="last", device="cpu", dtype="float32", device_map=dmap,
                offload_folder=str(tmp_path / "off")).encode(texts)
    assert np.abs(a - b).max() < 1e-5
