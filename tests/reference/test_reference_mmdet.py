"""The mmdetection 3.3 reference (``MMDetYoloXLoss``): its quirks, hand-worked, and agreement with the static mode."""

from __future__ import annotations

import math

import pytest
import torch

from support import agrees_up_to_ties
from yolox_export import MMDetYoloXLoss, StaticYoloXLoss
from yolox_export.boxes import mmdet_l1_target
from yolox_export.config import LossConfig
from yolox_export.grid import make_grid
from yolox_export.reference.mmdet import assign_image, bbox_overlaps, in_gt_and_in_center_info
from yolox_export.scenarios import make_scenario

STRIDES = (8,)
NUM_CLASSES = 2


def test_candidates_use_cell_centres_and_the_corner_box_centre():
    # 4x4 grid, stride 8: cell centres x * 8 + 4 = 4, 12, 20, 28. Box (8, 8, 24, 24): strictly inside for 12 and 20
    # only; its centre (16, 16) reaches 2.5 * 8 = 20 either way, so every centre is within it
    grid = make_grid([(4, 4)], STRIDES)
    priors = torch.stack((grid.x_shifts * grid.strides + grid.strides * 0.5,
                          grid.y_shifts * grid.strides + grid.strides * 0.5), dim=-1)
    in_gts, in_cts = in_gt_and_in_center_info(priors, grid.strides, torch.tensor([[8.0, 8.0, 24.0, 24.0]]), 2.5)
    inside = {(int(x), int(y)) for x, y, hit in zip(grid.x_shifts, grid.y_shifts, in_gts[:, 0]) if hit}
    assert inside == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert bool(in_cts.all())
    # a centre test of radius 0.5: |x_c - 16| < 4 holds for no centre (12 and 20 are exactly 4 away: strict)
    assert not bool(in_gt_and_in_center_info(priors, grid.strides, torch.tensor([[8.0, 8.0, 24.0, 24.0]]), 0.5)[1].any())


def test_bbox_overlaps_is_cells_by_targets_with_the_union_clamped():
    cells = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    targets = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    # [2 cells, 2 targets]: 1 and 25 / 175; the empty target overlaps nothing: 0 / max(union, 1e-6) = 0
    torch.testing.assert_close(bbox_overlaps(cells, targets), torch.tensor([[1.0, 0.0], [25.0 / 175.0, 0.0]]))


def test_a_cell_that_decodes_exactly_onto_its_target_costs_no_box_loss():
    # one 16x16 image, stride 8 (2x2 cells), one target (4, 4, 12, 12): every raw box is the target's own L1 target,
    # so every decoded box is the target: IoU 1 -> dynamic k = int(4 * 1) = 4, all four cells matched;
    # loss_bbox = 5 * sum(1 - 1) = 0 and loss_l1 = 0
    grid = make_grid([(2, 2)], STRIDES)
    target = torch.tensor([4.0, 4.0, 12.0, 12.0])
    raw = torch.zeros((1, 2, 2, 5 + NUM_CLASSES))
    boxes = mmdet_l1_target(target.expand(4, 4), grid.strides, grid.x_shifts, grid.y_shifts)  # [4, 4]
    raw[0, ..., :4] = boxes.reshape(2, 2, 4)
    loss = MMDetYoloXLoss(STRIDES, NUM_CLASSES, use_l1=True)
    _, components, assignment = loss.loss_and_assignment([raw.unsqueeze(1)], torch.tensor([[0, 1, *target.tolist()]]))
    assert assignment.fg_mask.all()
    torch.testing.assert_close(components[0], torch.tensor(0.0), atol=1e-6, rtol=0)  # iou term
    torch.testing.assert_close(components[3], torch.tensor(0.0), atol=1e-5, rtol=0)  # l1 term
    torch.testing.assert_close(assignment.matched_iou, torch.ones(1, 4), atol=1e-6, rtol=0)


def test_an_image_without_candidates_is_all_background():
    # a target far outside a 16x16 image: no cell centre inside it or within 2.5 strides of its centre
    grid = make_grid([(2, 2)], STRIDES)
    config = LossConfig(STRIDES, NUM_CLASSES, mode="mmdet")
    fg, index, iou = assign_image(torch.zeros(4, 4), torch.zeros(4, NUM_CLASSES), torch.zeros(4, 1),
                                  torch.tensor([[500.0, 500.0, 510.0, 510.0]]), torch.tensor([0.0]), grid, config)
    assert not fg.any() and index.numel() == 0 and iou.numel() == 0


def test_num_fg_is_the_positive_count_clamped_at_one_without_a_process_group():
    s = make_scenario("empty", batch_size=2, image_size=(64, 64), num_classes=NUM_CLASSES, box_format="xyxy")
    _, components = MMDetYoloXLoss(s.strides, NUM_CLASSES)(s.predictions, s.targets)
    # no positive: num_total = max(0, 1) = 1, so the objectness term is the plain BCE sum over every cell
    obj = torch.cat([p[..., 4].reshape(2, -1) for p in s.predictions], 1)
    torch.testing.assert_close(components[1], torch.nn.functional.binary_cross_entropy_with_logits(
        obj, torch.zeros_like(obj), reduction="sum"))


@pytest.mark.parametrize("kind", ["coco", "crowded", "border", "fresh"])
def test_static_mmdet_mode_equals_the_reference(kind):
    s = make_scenario(kind, batch_size=2, image_size=(128, 128), num_classes=20, seed=3, box_format="xyxy")
    leaves = [[p.clone().requires_grad_(True) for p in s.predictions] for _ in range(2)]
    reference = MMDetYoloXLoss(s.strides, 20, use_l1=True)
    static = StaticYoloXLoss(s.strides, 20, mode="mmdet", use_l1=True)
    ref_loss, ref_components, ref_assignment = reference.loss_and_assignment(leaves[0], s.targets)
    loss, components, assignment = static.loss_and_assignment(leaves[1], s.targets)
    if not agrees_up_to_ties(assignment, ref_assignment, s.predictions, s.targets, static.config):
        return  # a float32 near-tie decided the other way: explained, and the losses legitimately differ
    torch.testing.assert_close(assignment.matched_iou, ref_assignment.matched_iou, rtol=0, atol=1e-6)
    torch.testing.assert_close(components, ref_components, rtol=1e-5, atol=1e-6)
    (ref_loss + loss).backward()
    for ours, theirs in zip(leaves[1], leaves[0]):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-6)


def test_the_iou_cost_epsilon_is_mmdets():
    assert LossConfig(STRIDES, NUM_CLASSES, mode="mmdet").iou_cost_eps == 1e-7
    assert math.isclose(LossConfig(STRIDES, NUM_CLASSES, mode="regular").iou_cost_eps, 1e-8)
