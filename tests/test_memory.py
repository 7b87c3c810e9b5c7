"""The memory terms a real run peaks on, each exact from its formula, and the plan printing them; plus the throughput
arithmetic (FLOPs and hours at a stated MFU) the plan prints per stage. The formulas were read off the engines'
code at the pinned versions (transformers 5.23 ``sdpa_attention_forward``/``repeat_kv`` and ``DynamicLayer.update``,
accelerate 1.15 ``fsdp2_prepare_model`` and ``DistributedDataParallelKwargs``); no GPU measured them here
(``experiments/gpu_check.py`` does, beside the plan)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from encore.scale import throughput as T
from encore.scale.arch import Arch
from encore.scale.hardware import GB, Gpus
from encore.scale.memory import (attention_activation_bytes, cache_concat_bytes, gqa_repeat_bytes,
                           inference_activation_bytes, mlp_activation_bytes, training_layer_activation_bytes,
                           training_memory)
from encore.run.pipeline import build
from encore.scale.placement import place_inference
from encore.node.plan import format_plan, plan_experiment

from conftest import CONF, SHARED_HH

# Llama-3-70B's shape (conf/arch/llama3_70b_instruct.yaml) with a round parameter count
L70 = Arch("l70", "t", "llama", 70_000_000_000, n_layers=80, hidden=8192, intermediate=28672, n_heads=64,
           n_kv_heads=8, head_dim=128, vocab=128256, largest_block=856_000_000)
L8 = Arch("l8", "t", "llama", 7_500_000_000, n_layers=32, hidden=4096, intermediate=14336, n_heads=32,
          n_kv_heads=8, head_dim=128, vocab=128256, largest_block=218_000_000)


def paper(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["experiment=paper_main_table", *overrides])


def test_the_70b_raters_suffix_pass_repeats_10_7_gb_of_kv_per_layer():
    rows, L = 8 * 10, 4096  # batch 8 x 10 rules, attending over 4096 positions
    assert gqa_repeat_bytes(L70, rows, L, 2) == 2 * rows * L * 64 * 128 * 2 == 10_737_418_240
    mha = Arch(**{**L70.__dict__, "n_kv_heads": 64})
    assert gqa_repeat_bytes(mha, rows, L, 2) == 0  # no grouped-query attention: nothing repeated
    assert cache_concat_bytes(L70, rows * L, 2) == rows * L * 2 * 8 * 128 * 2 == 1_342_177_280


def test_one_layers_swiglu_and_attention_activations():
    T_ = 8 * 4096
    assert mlp_activation_bytes(L70, T_, 2) == 3 * T_ * 28672 * 2
    assert attention_activation_bytes(L70, T_, 2) == T_ * (3 * 64 + 3 * 8) * 128 * 2
    assert inference_activation_bytes(L70, T_, 2) == 2 * T_ * 8192 * 2 + 3 * T_ * 28672 * 2  # the MLP is larger
    assert training_layer_activation_bytes(L8, 100, 2) == 100 * (9 * 4096 + 3 * 1024 + 4 * 14336 + 2 * 4096) * 2


def test_training_terms_ddp_buckets_fsdp_upcast_and_the_gathered_embedding():
    kw = dict(tokens=1000, gradient_checkpointing=True)
    ddp = training_memory(L8, param_dtype="bfloat16", optim="adamw_8bit", strategy="ddp", processes=8, **kw).parts
    assert ddp["ddp gradient buckets"] == 7_500_000_000 * 2  # gradient_as_bucket_view=False: a second bf16 copy
    one = training_memory(L8, param_dtype="bfloat16", optim="adamw_8bit", strategy="single", processes=1, **kw).parts
    assert "ddp gradient buckets" not in one
    fsdp = training_memory(L8, param_dtype="bfloat16", optim="adamw", strategy="fsdp", processes=8, **kw).parts
    # bf16 weights become fp32: +2 B weights, +2 B gradients, +4 B for AdamW's two moments, over 8 shards
    assert fsdp["fp32 upcast (FSDP2)"] == 7_500_000_000 * (2 + 2 + 4) // 8
    assert fsdp["embedding (gathered, FSDP2 root)"] == 128256 * 4096 * 2
    own = training_memory(L8, param_dtype="float32", optim="adamw", strategy="fsdp", processes=8,
                          embedding_gathered=False, **kw).parts
    assert "fp32 upcast (FSDP2)" not in own and "embedding (gathered, FSDP2 root)" not in own
    assert own["activations"] == 32 * 1000 * 4096 * 2 + training_layer_activation_bytes(L8, 1000, 2)


def test_one_layers_transients_are_held_in_full_by_every_gpu_not_split_with_the_layers():
    gpus = Gpus(4, 100 * GB, "t", headroom=0.0)
    w = L8.n_params * 2  # 15 GB of weights
    spread = place_inference(L8, 2, 300 * GB, gpus, field="rater")  # cache spread over the layers: 315/4 per GPU
    assert spread.fits and spread.n_gpus == 4
    held = place_inference(L8, 2, 240 * GB, gpus, field="rater", transient=40 * GB)  # 255/4 + 40 + block > 100
    assert not held.fits and held.need == w + 280 * GB


def test_flops_and_hours_from_the_formulas():
    c = T.inference(70_000_000_000, 1_000_000, 2, 989.0, 0.4)
    assert c.flops == 2 * 70e9 * 1e6 and c.hours == pytest.approx(2 * 70e9 * 1e6 / (2 * 989e12 * 0.4) / 3600)
    t = T.training(7_500_000_000, 2_000_000, 8, 312.0, 0.5)
    assert t.flops == 6 * 7.5e9 * 2e6 and t.hours == pytest.approx(6 * 7.5e9 * 2e6 / (8 * 312e12 * 0.5) / 3600)
    assert T.inference(1, 1, 1, None, 0.4).hours is None
    assert T.training_sequences(1000, 2.0, 0.05, None, 8, 4, 8) == 2 * 1900
    assert T.training_sequences(1000, 2.0, 0.05, 10, 8, 4, 8) == 10 * 4 * 8 * 8 * 2
    with pytest.raises(ValueError, match="plan.mfu=1.5"):
        T.hours(1.0, 1, 989.0, 1.5)


def test_the_plan_prints_every_term_and_the_batch_that_fills_the_node():
    """The 70B at the ceiling rater.batch_size=8 needs 5 of 8 GPUs: one copy. The placement picks batch 6 (4 GPUs, two
    copies); its terms at 6 x 10 rules x 4096: the SDPA repeat 2 * 60 * 4096 * 64 * 128 * 2 bytes."""
    p = plan_experiment(paper("rater=hf", "plan.gpus=8x80GB"))  # 80 x 10^9 bytes; an H100's 79.18 GiB takes batch 7
    rate = next(s for s in p["stages"] if s["stage"] == "rate")
    assert rate["parts"]["gqa k/v repeat (1 layer)"] == 2 * 60 * 4096 * 64 * 128 * 2 == 8_053_063_680
    assert (rate["batch"], rate["n_gpus"]) == (6, 4)
    text = format_plan(p)
    for term in ("kv concat (1 layer)", "gqa k/v repeat (1 layer)", "activations (1 layer)",
                 "replicas: 2 x 4 GPU(s) (rater.batch_size 6, the largest up to 8 that fits the most copies",
                 "kv cache: sized for 6 responses x 10 rules x 4,096 tokens (rater.max_length",
                 "GPUs computing: 2 of 8"):
        assert term in text, term
    one = plan_experiment(paper("rater=hf", "plan.gpus=8x80GB", "rating.replicas=1"))  # one copy asked for: the ceiling fits
    assert "replicas: 1 x 5 GPU(s) (rater.batch_size 8;" in format_plan(one)


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_the_plan_prints_each_stages_flops_and_hours_from_the_counted_tokens():
    cfg = paper("rater=hf", "data=hh_rlhf_harmless", f"data.path={SHARED_HH}", "data.limit=40", "plan.gpus=8xH100",
                "plan.mfu=0.5", "plan.sample=40")
    p = plan_experiment(cfg)
    rate = next(s for s in p["stages"] if s["stage"] == "rate")
    tokens = p["data"]["prefill_tokens_prefix_reuse"]
    n = build(cfg.rater).arch_info().n_params
    replicas = int(rate["replicas"].split(" x ")[0])
    expect = T.inference(n, tokens, replicas, 989.0, 0.5, "prefill with shared-prefix reuse").line(0.5, 989.0)
    assert rate["cost"] == expect and f"{2.0 * n * tokens:.3g} FLOPs" in expect
    train, tr = next(s for s in p["stages"] if s["stage"] == "train"), build(cfg.train)
    seqs = T.training_sequences(40, tr.epochs, tr.val_frac, tr.max_steps, *tr.split(1), 1)
    per = min(p["data"]["text_tokens_mean"], build(cfg.model).max_length)
    assert train["computing"].startswith("8 of 8")  # ddp over the node, chosen from the GPU count
    assert train["cost"].startswith(T.training(build(cfg.model).arch_info().n_params, int(seqs * per), 8, 989.0,
                                               0.5).line(0.5, 989.0).split(" [")[0])


def test_config_models_split_as_from_pretrained_splits_them_balanced_and_the_plan_keeps_its_buffer():
    """``device_map="auto"`` is transformers' balanced split (``get_balanced_memory``), not accelerate's sequential
    fill; the device map is computed on the meta device, so no GPU is needed to check it."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, LlamaConfig

    from encore.scale.loading import split
    from encore.scale.placement import balance_buffer

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=1000)
    with init_empty_weights():
        m = AutoModelForCausalLM.from_config(cfg)
    size = sum(p.numel() * 4 for p in m.parameters())
    caps = {0: size, 1: size, 2: size}
    assert sorted(set(split(m, "auto", dict(caps)).values())) == [0, 1, 2]  # every GPU gets layers
    assert sorted(set(split(m, "sequential", dict(caps)).values())) == [0, 1]  # filled in order
    assert balance_buffer(L70, 2) == int(1.25 * 128256 * 8192) * 2  # the embedding is the largest leaf
