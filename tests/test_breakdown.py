"""The engines benchmark's time breakdown (``bench.breakdown=true``, :mod:`benchmarks.breakdown`) on a real torch
model of two linear layers: the FLOPs its hooks count are the layers' exact arithmetic, the hooks are gone after the
call, and the profiler's shares put matrix products in the matmul category and sum to one."""

import pytest
import torch

from benchmarks.breakdown import CATEGORIES, OTHER, breakdown, category, lines, linear_rate, operator_shares


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32, bias=False))


def test_linear_rate_counts_each_layers_flops_on_every_row_and_removes_its_hooks():
    m, x = _model(), torch.randn(3, 5, 64)  # 15 rows, as a padded (batch, length, hidden) activation
    out = linear_rate(m, lambda: m(x))
    assert out["linear_calls"] == 2
    assert out["linear_flops"] == 2 * 15 * (64 * 128 + 128 * 32)
    assert 0 < out["linear_cpu_s"] <= out["call_cpu_s"] + 1e-3 and 0 < out["linear_share"] <= 1.01
    again = linear_rate(torch.nn.Sequential(), lambda: m(x))  # hooks of the first call removed: nothing counted
    assert again["linear_calls"] == 0
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


def test_operator_shares_put_matrix_products_in_the_matmul_category_and_sum_to_one():
    m, x = _model(), torch.randn(64, 64)
    with torch.inference_mode():
        shares = operator_shares(lambda: [m(x) for _ in range(20)])
    assert list(shares) == [name for name, _ in CATEGORIES] + [OTHER]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares[CATEGORIES[0][0]] > 0.2  # two matmuls per pass dominate a ReLU


@pytest.mark.parametrize("op, want", [("aten::mm", 0), ("aten::addmm", 0), ("aten::_scaled_dot_product_flash_attention_for_cpu", 1),
                                      ("aten::cat", 2), ("aten::silu", 3), ("aten::mul", 3), ("aten::embedding", None)])
def test_operators_fall_in_their_category(op, want):
    assert category(op) == (OTHER if want is None else CATEGORIES[want][0])


def test_the_printed_lines_name_the_peak_ratio_and_every_category():
    m, x = _model(), torch.randn(256, 64)
    b = breakdown(m, lambda: [m(x) for _ in range(5)], peak_cpu=1e11)
    text = "\n".join(lines(b))
    assert f"= {b['linear_util']:.2f} of the matmul peak per CPU-second" in text
    assert all(name in text for name, _ in CATEGORIES) and OTHER in text
