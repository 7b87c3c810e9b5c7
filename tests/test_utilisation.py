"""``flop_util`` counts what was computed (issue 32): each parameter once, attention included, the head only where
its logits are computed, each engine charged for its own chunks (:mod:`encore.scale.utilisation`). Exact values."""

import pytest

from encore.scale.arch import Arch
from encore.scale.utilisation import (FlopShape, achieved_util, cached_prompt_flops, forward_flops,
                                      shared_prefix_flops, token_params)

SMOLLM2 = Arch("smollm2", "test", "llama", 162_826_560, 30, 576, 1536, 9, 3, 64, 49152, 3_540_096)
TOY = FlopShape(body=10, vocab=7, hidden=3, layers=2, heads=2, head_dim=4, tied=False)


def _brute(shape, new, cached, logits):
    """Token by token: 2 FLOPs per body weight, QK^T and AV over every key the token sees, the head per logit row."""
    total = 0
    for j in range(1, new + 1):
        total += 2 * shape.body + shape.layers * shape.heads * (2 * shape.head_dim + 2 * shape.head_dim) * (cached + j)
    return total + logits * 2 * shape.vocab * shape.hidden


def test_a_tied_embedding_is_counted_once():
    tied, untied = FlopShape.from_arch(SMOLLM2, tied=True), FlopShape.from_arch(SMOLLM2, tied=False)
    assert tied.body == token_params(SMOLLM2) == 30 * 3_540_096 + 576 == 106_203_456
    assert tied.params == 134_515_008  # SmolLM2-135M: not the meta-device build's 162,826,560
    assert untied.params == 162_826_560


def test_forward_flops_exact_values():
    assert forward_flops(TOY, 3, 5, 1) == 2 * 10 * 3 + 4 * 2 * 2 * 4 * (3 * 5 + 6) + 2 * 7 * 3 == 1446
    for new, cached, logits in [(1, 0, 0), (7, 0, 1), (4, 9, 1), (13, 2, 3)]:
        assert forward_flops(TOY, new, cached, logits) == _brute(TOY, new, cached, logits)


def test_each_engine_is_charged_its_own_chunks():
    """rater=hf: the prefix once, no head; each suffix after it with one logit. vLLM: what its cache did not
    supply. Two responses, prefixes 5 and 3, suffixes (2, 4) and (1,)."""
    hf = shared_prefix_flops(TOY, [(5, [2, 4]), (3, [1])])
    assert hf == (forward_flops(TOY, 5) + forward_flops(TOY, 2, 5, 1) + forward_flops(TOY, 4, 5, 1)
                  + forward_flops(TOY, 3) + forward_flops(TOY, 1, 3, 1))
    # vLLM computing the first rule prompt in full and finding 4 of the 5 prefix tokens cached (one block of 4) for
    # the second: 7 + 5 tokens computed, not 7 + 9
    vllm = cached_prompt_flops(TOY, [(7, 0), (9, 4)])
    assert vllm == forward_flops(TOY, 7, 0, 1) + forward_flops(TOY, 5, 4, 1)
    assert achieved_util(2e6, 2.0, 1e6) == 1.0


@pytest.mark.slow
def test_shape_of_the_loaded_smollm2_counts_its_tied_head_once(smollm2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert FlopShape.from_model(model) == FlopShape.from_arch(SMOLLM2, tied=True)
