"""Box formats: the corner (x1, y1, x2, y2) arithmetic of mmdet mode, hand-worked, and what each format reads."""

from __future__ import annotations

import math

import pytest
import torch

from yolox_export.box_format import BOX_FORMATS, CENTRE_SIZE, CORNERS
from yolox_export.boxes import mmdet_iou_loss, mmdet_l1_target, mmdet_pairwise_iou
from yolox_export.config import MODES, LossConfig
from yolox_export.grid import Grid, decode_corners


def test_mmdet_pairwise_iou_by_hand():
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    pred = torch.tensor([[5.0, 5.0, 15.0, 15.0], [2.0, 2.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    iou = mmdet_pairwise_iou(*target.unbind(-1), *pred.unbind(-1))
    # overlap 5 x 5 = 25, union 100 + 100 - 25 = 175; disjoint: 0; two empty boxes: 0 / max(0, 1e-6) = 0
    torch.testing.assert_close(iou, torch.tensor([25.0 / 175.0, 0.0, 0.0]))


def test_mmdet_pairwise_iou_clamps_the_union_instead_of_adding():
    # a 1e-4 x 1e-4 box inside itself: union 1e-8 < 1e-6, so the IoU is 1e-8 / 1e-6 = 0.01, not 1
    box = torch.tensor([0.0, 0.0, 1e-4, 1e-4], dtype=torch.float64)
    iou = mmdet_pairwise_iou(*box.unbind(-1), *box.unbind(-1))
    torch.testing.assert_close(iou, torch.tensor(0.01, dtype=torch.float64))


def test_mmdet_iou_loss_is_one_minus_the_clamped_iou_squared():
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0]])
    # iou 1 -> 0; 1/7 -> 1 - 1/49; disjoint: max(0, 1e-16)^2 = 1e-32 -> 1 in float32
    torch.testing.assert_close(mmdet_iou_loss(pred, target), torch.tensor([0.0, 1 - 1 / 49, 1.0]))
    with pytest.raises(ValueError, match="square"):
        mmdet_iou_loss(pred, target, "giou")


def test_mmdet_l1_target_against_the_unshifted_prior():
    gt = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    stride, x, y = torch.tensor([8.0]), torch.tensor([1.0]), torch.tensor([2.0])
    # cx = 20, cy = 40, w = 20, h = 40; prior (8, 16): ((20 - 8) / 8, (40 - 16) / 8, log(2.5 + 1e-8), log(5 + 1e-8))
    want = torch.tensor([[1.5, 3.0, math.log(2.5), math.log(5.0)]])
    torch.testing.assert_close(mmdet_l1_target(gt, stride, x, y), want)


def test_decode_corners_by_hand():
    grid = Grid(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([8.0]))
    raw = torch.tensor([[[0.5, -0.25, math.log(2.0), 0.0]]])
    # centre (0.5 * 8 + 8, -0.25 * 8 + 16) = (12, 14); size (2 * 8, 1 * 8) = (16, 8)
    torch.testing.assert_close(decode_corners(raw, grid), torch.tensor([[[4.0, 10.0, 20.0, 18.0]]]))


def test_a_corner_box_decodes_to_its_own_l1_target():
    gt = torch.tensor([[13.0, 7.0, 45.0, 29.0]])
    stride, x, y = torch.tensor([16.0]), torch.tensor([1.0]), torch.tensor([0.0])
    raw = mmdet_l1_target(gt, stride, x, y).unsqueeze(0)  # [1, 1, 4]
    decoded = decode_corners(raw, Grid(x, y, stride))
    torch.testing.assert_close(decoded, gt.unsqueeze(0), rtol=0, atol=1e-5)


def test_formats_read_centre_corners_and_extent():
    cxcywh = torch.tensor([10.0, 20.0, 4.0, 6.0])
    assert [float(v) for v in CENTRE_SIZE.centre(cxcywh)] == [10.0, 20.0]
    assert [float(v) for v in CENTRE_SIZE.corners(cxcywh)] == [8.0, 17.0, 12.0, 23.0]
    xyxy = torch.tensor([8.0, 17.0, 12.0, 23.0])
    assert [float(v) for v in CORNERS.centre(xyxy)] == [10.0, 20.0]
    assert [float(v) for v in CORNERS.extent(xyxy)] == [4.0, 6.0]
    # corners allow an empty box (mmdetection computes it), centre-size needs w, h > 0; NaN is never well formed
    assert CORNERS.extent_ok(torch.tensor([[1.0, 1.0, 1.0, 2.0], [2.0, 1.0, 1.0, 2.0],
                                           [0.0, 0.0, float("nan"), 1.0]])).tolist() == [True, False, False]
    assert CENTRE_SIZE.extent_ok(torch.tensor([[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 2.0]])).tolist() == [False, True]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_names_a_known_format(mode):
    config = LossConfig((8, 16, 32), 3, mode=mode)
    assert config.box_format is BOX_FORMATS[config.rules.box_format]
    assert config.box_format.row.startswith("class, ")


def test_mmdet_mode_has_the_square_iou_loss_only():
    with pytest.raises(ValueError, match="iou_type must be one of \\('iou',\\) in mmdet mode"):
        LossConfig((8, 16, 32), 3, mode="mmdet", iou_type="giou")
