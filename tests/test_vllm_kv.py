"""The real vLLM engine (the CPU build, run by .ci/vllm_lane) on a dummy-weight model of one tensor-parallel rank's
shape (encore.node.vllm_check, the code experiments/gpu_check.py runs on a GPU): its own KV-cache blocks against the
plan's prediction (encore.scale.vllm_memory), the floor it refuses to start below, and its prefix-cache hit rate for
the paper's rule prompts (the real Llama-3 tokenizer) grouped by response vs shuffled.

What this proves: the KV arithmetic (layers x block size x 2 x KV heads per rank x head_dim x dtype bytes, vLLM's
block rounding and its null block), that a rank config built by ``rank_config`` loads with ``load_format="dummy"``
without a hub or tokenizer, that vLLM needs one ``max_model_len`` request besides the null block (the plan's floor),
and that a response's K prompts reuse its conversation's blocks only when they reach the engine together. What it
does not prove: the non-KV terms (profile peak, sampler warm-up, CUDA graphs, non-torch memory). On the CPU build
the KV cache is the bytes asked for (``kv_cache_memory_bytes``, as VLLM_CPU_KVCACHE_SPACE), so vLLM's GPU profiling
never runs here; those terms are measured only by experiments/gpu_check.py on a GPU.
"""

from __future__ import annotations

import pytest
import yaml

from encore.node.vllm_check import (engine_kv_tokens, hit_rates, kv_comparison, rank_config, start_engine,
                                    write_model_dir)
from encore.rating.tokens import PromptTokenizer
from encore.rules import load_rules
from encore.scale.arch import Arch
from encore.scale.vllm_memory import kv_bytes_per_block, vllm_starts

from conftest import ROOT, needs_real_tokenizers

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
pytest.importorskip("vllm", reason="vLLM not importable here: run .ci/vllm_lane")
from vllm.platforms import current_platform  # noqa: E402

if not current_platform.is_cpu():
    pytest.skip("the CPU build's test (on a GPU: experiments/gpu_check.py)", allow_module_level=True)

# a 4-head (2 KV heads) Llama at tensor parallel 2: one rank holds 2 heads, 1 KV head, half the MLP
FULL = Arch("tiny-llama3", "test", "llama", 0, 2, 128, 512, 4, 2, 64, 128256, 0)
CONTEXT, BLOCK = 256, 128  # max_model_len (the demo's rule prompts are 140-160 tokens); the CPU build's block size
PAGE = 2 * BLOCK * 2 * 1 * 64 * 4  # one block of both layers' K and V, fp32: 131,072 bytes
BLOCKS = 4  # the null block and three: one prompt's two blocks at a time, so the order decides what is evicted


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model_dir(tmp_path_factory.mktemp("rank"), rank_config(FULL, 2, 2, CONTEXT, "float32"))


@pytest.fixture(scope="module")
def engine(model_dir, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)  # the lane's setting would replace kv_cache_memory_bytes
    llm = start_engine(model_dir, "float32", CONTEXT, kv_cache_memory_bytes=BLOCKS * PAGE + PAGE - 1)
    yield llm
    mp.undo()
    llm.llm_engine.engine_core.shutdown()


def test_vllm_allocates_the_kv_blocks_the_plan_predicts(engine, model_dir):
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir) / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (2, 1, 256)
    kw = {"kv_cache_memory_bytes": BLOCKS * PAGE + PAGE - 1, "block_size": BLOCK}
    got = kv_comparison(config, engine, 0, 0.9, 4, engine_kwargs=kw, max_model_len=CONTEXT)
    assert engine_kv_tokens(engine) == (BLOCKS, BLOCK)
    assert got["vllm_kv_tokens"] == got["predicted_kv_tokens"] == BLOCKS * BLOCK and got["ratio"] == 1.0
    from encore.node.vllm_check import rank_arch

    assert kv_bytes_per_block(rank_arch(config), 1, 4, BLOCK) == PAGE


def test_vllm_refuses_a_kv_cache_below_one_max_model_len_request_as_the_plan_does(model_dir, monkeypatch):
    """256 tokens are 2 blocks of 128, plus the null block: 3 blocks' bytes less one byte and vLLM refuses to start
    (it runs with 4: the engine fixture), as the plan's floor (``vllm_starts``) says."""
    need = -(-CONTEXT // BLOCK) + 1
    assert vllm_starts(need * BLOCK, BLOCK, CONTEXT) and not vllm_starts((need - 1) * BLOCK, BLOCK, CONTEXT)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    with pytest.raises(Exception, match="initialization failed|KV cache|memory"):
        start_engine(model_dir, "float32", CONTEXT, kv_cache_memory_bytes=need * PAGE - 1)


@needs_real_tokenizers
def test_grouped_rule_prompts_hit_the_prefix_cache_and_shuffled_ones_mostly_miss(engine):
    """Six demo responses x the ten safety rules, on the real Llama-3-Instruct tokenizer, through a cache of three
    blocks. Grouped by response, vLLM's own count of cached tokens is exactly the reuse of each response's
    conversation (all but the first of its K prompts reuse the conversation's full blocks; the few blocks that two
    rule texts' common openings share across non-adjacent prompts, which a cache that never evicts would also
    reuse, are evicted). Shuffled, a response's blocks are evicted before its next prompt comes: most reuse is lost.
    Measured here: grouped 0.516 (= the conversations' reuse), shuffled 0.158, never evicted 0.544."""
    from encore.data.demo import load_demo
    from encore.node.vllm_check import conversation_hit_rate, grouped_and_shuffled, ideal_hit_rate

    pairs = load_demo("train").iloc[:6]
    rules = load_rules(yaml.safe_load((ROOT / "conf" / "rules" / "safety10.yaml").read_text()))
    seqs = PromptTokenizer("shared:llama3-instruct").rule_ids(list(pairs["prompt"]), list(pairs["chosen"]), rules)
    assert max(len(s) for per in seqs for s in per) < CONTEXT
    ideal = ideal_hit_rate(grouped_and_shuffled(seqs)[0], BLOCK)
    conversations = conversation_hit_rate(seqs, BLOCK)
    got = hit_rates(engine, seqs)
    print(f"prefix-cache hit rate: grouped {got['grouped']:.3f}, shuffled {got['shuffled']:.3f}, "
          f"conversations {conversations:.3f}, never evicted {ideal:.3f}")
    assert got["grouped"] == pytest.approx(conversations) and 0.4 < conversations <= ideal
    assert got["shuffled"] < got["grouped"] / 2
