"""static/loss.py helpers: the non-finite marks, the same in eager and in the exported form."""

import pytest
import torch

from conftest import onnx_export_answers
from yolox_export.static.loss import nonfinite_marks


def rows_with_specials(seed: int) -> torch.Tensor:
    """[3, 40, 85] outputs: one special value per marked cell at a random column, and huge finite values elsewhere
    (whose sum overflows: the marks must not take overflow for a non-finite output)."""
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(3, 40, 85, generator=gen)
    raw[0, :10] = 3e38 * torch.sign(torch.randn(10, 85, generator=gen))  # finite, sum overflows or cancels
    specials = (float("nan"), float("inf"), -float("inf"))
    for cell in range(10, 40, 2):
        column = int(torch.randint(0, 85, (), generator=gen))
        raw[cell % 3, cell, column] = specials[cell % 3]
    return raw


@pytest.mark.parametrize("exporting", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_nonfinite_marks_flag_exactly_the_cells_with_a_non_finite_output(exporting, seed):
    raw = rows_with_specials(seed)
    with onnx_export_answers(exporting):
        marks = nonfinite_marks(raw)  # [3, 40]
    expected = torch.where(torch.isfinite(raw).all(-1), 0.0, float("nan"))
    torch.testing.assert_close(marks, expected, equal_nan=True)


def test_nonfinite_marks_hand_worked():
    # cell 0 all finite -> 0; cell 1 has a NaN -> NaN; cell 2 has -inf as its minimum -> NaN; cell 3 +inf -> NaN
    raw = torch.tensor([[[1.0, -2.0, 3.0], [1.0, float("nan"), 0.0], [-float("inf"), 0.0, 1.0],
                         [0.0, float("inf"), 5.0]]])
    torch.testing.assert_close(nonfinite_marks(raw), torch.tensor([[0.0] + [float("nan")] * 3]), equal_nan=True)
