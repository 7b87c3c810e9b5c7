"""vLLM 0.32's memory before the KV cache (encore.scale.vllm_memory) and the tensor-parallel layout it decides, with
exact values for the paper's 70B rater (conf/arch/llama3_70b_instruct.yaml) on an H100 80GB as torch reports it.

What these prove: the arithmetic of each term as the module docstring derives it from vLLM's source, and that the
plan never picks a layout whose KV cache is below one scheduler step. What they do not prove: that a GPU's vLLM
allocates these bytes (the profile peak, the CUDA-graph and non-torch terms are measured only by
experiments/gpu_check.py on a GPU; the KV block arithmetic is checked against the real CPU engine in
tests/test_vllm_engine.py)."""

from __future__ import annotations

import pytest
import yaml

from encore.scale.arch import config_from_dict, describe
from encore.scale.hardware import Gpus, parse_gpus
from encore.scale.tensor_parallel import place_vllm, vllm_step_tokens
from encore.scale.vllm_memory import (cudagraph_sizes, default_batch, forward_peak, kv_bytes_per_block,
                                      sampler_peak, vllm_engine, vllm_kv_blocks, vllm_kv_tokens, vllm_non_kv_bytes,
                                      vllm_starts)

from conftest import ROOT

H100 = 81089 * 2 ** 20  # torch.cuda.get_device_properties(...).total_memory of an "NVIDIA H100 80GB HBM3" (79.19 GiB)
NAME = "NVIDIA H100 80GB HBM3"
MAX_LEN = 4097  # rater.max_length 4096 + 1


@pytest.fixture(scope="module")
def arch():
    rec = yaml.safe_load((ROOT / "conf" / "arch" / "llama3_70b_instruct.yaml").read_text())
    rec.pop("_name_or_path")
    return describe(config_from_dict(rec), "llama3-70b", "test")


def test_engine_defaults_are_vllms_for_the_gpu():
    """``EngineArgs.get_batch_defaults`` for vllm.LLM: 16,384 tokens and 1,024 sequences on an H100 or H200, 8,192 and
    256 on an A100 80GB; the default CUDA-graph sizes up to min(2R, 512) (51 of them); none when eager."""
    assert default_batch(H100, NAME) == (16384, 1024)
    assert default_batch(int(139.8 * 2 ** 30), "NVIDIA H200") == (16384, 1024)
    assert default_batch(H100, "NVIDIA A100-SXM4-80GB") == (8192, 256)
    e = vllm_engine(H100, NAME, None, MAX_LEN)
    assert (e.max_num_batched_tokens, e.max_num_seqs, e.block_size) == (16384, 1024, 16)
    assert len(e.cudagraph_sizes) == 51 and e.cudagraph_sizes[:5] == (1, 2, 4, 8, 16) and e.cudagraph_sizes[-1] == 512
    assert cudagraph_sizes(4, 8192) == (1, 2, 4, 8)
    assert vllm_engine(H100, NAME, {"enforce_eager": True}).cudagraph_sizes == ()
    own = vllm_engine(H100, NAME, {"max_num_batched_tokens": 2048}, MAX_LEN)
    assert (own.max_num_batched_tokens, own.max_num_seqs) == (2048, 1024)
    assert vllm_engine(H100, NAME, None, 8).max_num_batched_tokens == 8192  # never more than R full sequences


def test_the_70b_non_kv_bytes_per_gpu_at_tp_2_and_4_on_an_h100(arch):
    e = vllm_engine(H100, NAME, None, MAX_LEN)
    # the sampler warm-up: the dummy run's (16,384 x 8,192) hidden states, 2 x (1,024 x 8,192), the (1,024 x 128,256)
    # bf16 logits, and four fp32 copies of them (processed_logprobs): 268,435,456 + 33,554,432 + 262,668,288 +
    # 2,101,346,304
    assert sampler_peak(arch, 2, e) == 2_666_004_480
    assert forward_peak(arch, 2, 2, 16384) == 16384 * 2 * (2 * 8192 + 3 * 14336) == 1_946_157_056  # below the sampler
    assert vllm_non_kv_bytes(arch, 2, 2, e) == {
        "weights": 70_553_706_496, "sampler buffer": 132 * 128256 * 4, "non-torch": 171_798_691,
        "profile peak": 2_666_004_480, "cuda graphs": 512 * 2 * 59392 + 102 * 80 * 393216}
    assert vllm_non_kv_bytes(arch, 4, 2, e) == {
        "weights": 35_276_853_248, "sampler buffer": 67_719_168, "non-torch": 171_798_691,
        "profile peak": 2_666_004_480, "cuda graphs": 512 * 2 * 37888 + 102 * 80 * 393216}
    assert sum(vllm_non_kv_bytes(arch, 2, 2, e).values()) == 76_728_688_803  # above the 76,525,889,127 budget
    assert sum(vllm_non_kv_bytes(arch, 4, 2, e).values()) == 41_429_815_459


def test_the_70b_kv_tokens_left_per_gpu(arch):
    """ceil(total x 0.9) - non-KV, in blocks of 16 tokens x 80 layers x 2 x (8 / t) KV heads x 128 x 2 bytes."""
    e = vllm_engine(H100, NAME, None, MAX_LEN)
    assert kv_bytes_per_block(arch, 4, 2, 16) == 1_310_720
    assert vllm_kv_blocks(arch, 4, 2, H100, 0.9, e) == (76_525_181_338 - 41_429_815_459) // 1_310_720 == 26_775
    assert vllm_kv_tokens(arch, 4, 2, H100, 0.9, e) == 428_400
    assert vllm_kv_tokens(arch, 2, 2, H100, 0.9, e) == 0
    assert vllm_kv_tokens(arch, 2, 2, H100, 0.95, e) == 24_704
    eager = vllm_engine(H100, NAME, {"enforce_eager": True}, MAX_LEN)
    assert vllm_kv_tokens(arch, 2, 2, H100, 0.9, eager) == 18_704
    mem = vllm_engine(H100, NAME, {"kv_cache_memory_bytes": 2 ** 30}, MAX_LEN)  # vLLM then skips its profiling
    assert vllm_kv_tokens(arch, 4, 2, H100, 0.9, mem) == 2 ** 30 // 1_310_720 * 16


def test_vllm_starts_only_with_one_max_model_len_request_beside_the_null_block():
    assert vllm_starts(4128, 16, 4097) and not vllm_starts(4127, 16, 4097)  # 257 + 1 blocks of 16
    assert vllm_starts(2048 + 128, 128, 2048) and not vllm_starts(2048 + 127, 128, 2048)


def test_the_plan_picks_tp_4_for_the_70b_on_an_h100_and_prints_vllms_memory(arch):
    gpus = Gpus(8, H100, "detected", 0.08, name=NAME)
    p = place_vllm(arch, 2, "auto", gpus, MAX_LEN, 0.9, vllm_step_tokens(gpus, MAX_LEN))
    assert p.fits and p.tensor_parallel == 4
    assert ("vLLM's own memory before the KV cache 41.4 GB per GPU" in p.where
            and "KV cache of 428,384 tokens per GPU, 26.1 scheduler steps of 16,384" in p.where)  # less the null block
    assert p.parts["cuda graphs"] == 4 * 3_247_439_872 and p.parts["kv cache (a step of 16,384 tokens)"] > 0
    same = place_vllm(arch, 2, "auto", parse_gpus("8x80GB"), MAX_LEN, 0.9, vllm_step_tokens(gpus, MAX_LEN))
    assert same.tensor_parallel == 4  # the same layout from the bare size, 80 x 10^9 bytes


def test_the_plan_never_picks_a_kv_cache_below_one_scheduler_step(arch):
    """TP 2 leaves 0 tokens at 0.9 (refused with the fix), 24,688 at 0.95 (one step of 16,384: taken); a larger step
    (max_num_batched_tokens 32,768) pushes the 0.95 layout back to TP 4."""
    gpus = Gpus(8, H100, "detected", 0.08, name=NAME)
    two = place_vllm(arch, 2, 2, gpus, MAX_LEN, 0.9, 16384)
    assert not two.fits and "leaving 0 KV-cache tokens, less than one scheduler step of 16,384" in two.where
    assert two.fix == "rater.tensor_parallel_size=4 (or auto)"
    assert place_vllm(arch, 2, "auto", gpus, MAX_LEN, 0.95, 16384).tensor_parallel == 2
    big = {"max_num_batched_tokens": 32768}
    step = vllm_step_tokens(gpus, MAX_LEN, big)
    assert step == 32768
    assert place_vllm(arch, 2, "auto", gpus, MAX_LEN, 0.95, step, engine_kwargs=big).tensor_parallel == 4
    for gb in (48, 80, 141):
        g = parse_gpus(f"8x{gb}GB")
        p = place_vllm(arch, 2, "auto", g, MAX_LEN, 0.9, vllm_step_tokens(g, MAX_LEN))
        e = vllm_engine(g.memory, g.name, None, MAX_LEN)
        assert p.fits and (vllm_kv_tokens(arch, p.tensor_parallel, 2, g.memory, 0.9, e) - 16) >= 16384, gb
