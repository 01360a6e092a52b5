"""static/masks.py: float32 counts and "any" of boolean masks, the same in eager and under ONNX export."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from support import onnx_export_answers
from yolox_export.static.masks import any_true, count_true


def test_count_true_hand_worked():
    # rows [T, F, T, T] and [F, F, F, F]: 3 and 0 along the last axis; columns: 1, 0, 1, 1
    mask = torch.tensor([[True, False, True, True], [False, False, False, False]])
    torch.testing.assert_close(count_true(mask, -1), torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(count_true(mask, 0, keepdim=True), torch.tensor([[1.0, 0.0, 1.0, 1.0]]))
    assert count_true(mask, -1).dtype == torch.float32


@pytest.mark.parametrize("exporting", [False, True])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_masks_equal_torch_reductions(exporting, data):
    # the reduced axis is never empty in the graph (G >= 1 slot, A >= 1 cell); other axes may be (B = 0)
    shape = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    shape[dim] = max(shape[dim], 1)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))) < 0.3
    keepdim = data.draw(st.booleans())
    with onnx_export_answers(exporting):
        assert torch.equal(any_true(mask, dim, keepdim), mask.any(dim, keepdim=keepdim))
        assert torch.equal(count_true(mask, dim, keepdim), mask.sum(dim, keepdim=keepdim).to(torch.float32))
