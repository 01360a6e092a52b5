"""LossConfig: ``max_dynamic_k`` is the fast reference's bound int(float32(10) * float32(bias)), computed without a
tensor (issue #13: nothing read back to the host); boolean fields are bools (tests/test_validation_padded.py)."""

import pytest
import torch

from yolox_export import LossConfig


@pytest.mark.parametrize("bias", (1.1, 1.0, 0.5, 0.7, 1.3, 2.3, 0.1, 1e-3, 0.29999998, 123.456))
def test_max_dynamic_k_is_the_float32_bound(bias):
    # 10 * 1.1 = 11.000000238... in float32 -> 11; 10 * 0.7 = 7.0000000 -> 7; 10 * 1e-3 -> 0 -> at least 1
    want = max(1, int((torch.tensor(10.0) * torch.tensor(bias)).item()))
    assert LossConfig((8,), 3, mode="fast", dynamic_ks_bias=bias).max_dynamic_k == want


def test_max_dynamic_k_regular_is_the_top_k():
    assert LossConfig((8,), 3, dynamic_ks_bias=3.0).max_dynamic_k == 10
