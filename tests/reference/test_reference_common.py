"""What the two eager references, RegularYoloXLoss (super-gradients' ``YoloXDetectionLoss``) and FastYoloXLoss
(``YoloXFastDetectionLoss``), share, each test run for both on tiny hand-built heads, every number worked out by
hand. Mode-specific rules are tested in test_reference_regular.py and test_reference_fast.py.

Layout used throughout: one level, stride 8, a 32x32 image -> a 4x4 grid, 16 cells, cell index = 4 * y + x.
A level is [B, 1, H, W, 5 + C] with (tx, ty, tw, th, obj, cls_0, cls_1, ...).

* Cell (x, y) has its candidate-test centre at ((x + 0.5) * 8, (y + 0.5) * 8): 4, 12, 20, 28 along each axis.
* Its predicted box is centre ((tx + x) * 8, (ty + y) * 8), size (exp(tw) * 8, exp(th) * 8). With all-zero logits a
  cell predicts an 8x8 box centred at (8x, 8y) -- the cell's top-left corner, NOT the cell centre.
* Radius 2.5 strides = 20 px (fast mode: whatever ``center_sampling_radius`` says); the centre test is strict, so a
  cell centre exactly 20 px away is out.
* dynamic k: regular max(int(sum of the top-10 candidate IoUs), 1); fast max(long(that sum * dynamic_ks_bias), 1),
  bias 1.1 by default.
* With C = 2 and all-zero class/objectness logits, p = sqrt(sigmoid(0) * sigmoid(0)) = 0.5 for each class, so the
  SimOTA class cost is BCE(0.5, .) summed over 2 classes = 2 ln2 = 1.386294 whatever the target class.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from yolox_export import FastYoloXLoss, RegularYoloXLoss
from yolox_export.reference.common import bce_class_cost

from support import IOU_TOL, LN2, MAIN_CLS, MAIN_IOU, TOL, fg_cells, head, main_case, set_cell, softplus

LOSSES = {"regular": RegularYoloXLoss, "fast": FastYoloXLoss}
MODES = pytest.mark.parametrize("mode", tuple(LOSSES))


def make_loss(mode, strides=(8,), **kwargs):
    return LOSSES[mode](list(strides), 2, **kwargs)


def dynamic_k_case():
    """Target (4, 4, 8, 8) class 1 again (candidates cells {0,1,2,4,5,6,8,9,10}, strong cell 0). Predictions:
      cell 0: t = (.5, .5, 0, 0)   -> centre (4, 4): IoU 1
      cell 1: t = (-.25, .5, 0, 0) -> centre (6, 4), [2, 10] x [0, 8]: inter 48, union 80, IoU 0.6
      cell 4: t = (.5, 0, 0, 0)    -> centre (4, 8), [0, 8] x [4, 12]: inter 32, union 96, IoU 1/3
      cell 5: t = (.5, 0, 0, 0)    -> centre (12, 8), [8, 16] x [4, 12]: touches x = 8 only, IoU 0
    top IoUs sum to 1 + 0.6 + 1/3 = 1.933333 (regular mode: k = int(1.933) = 1; fast: long(1.933 * 1.1 = 2.127) = 2).
    Costs: cell 0 = 2 ln2 + 0 (strong), cell 1 = 1e5 + 2 ln2 + 3 * 0.510826, cell 4 = 1e5 + 2 ln2 + 3 * 1.098612.
    """
    p = head()
    set_cell(p, 0, box=(0.5, 0.5, 0, 0))
    set_cell(p, 1, box=(-0.25, 0.5, 0, 0))
    set_cell(p, 4, box=(0.5, 0.0, 0, 0))
    set_cell(p, 5, box=(0.5, 0.0, 0, 0))
    return p, torch.tensor([[0, 1, 4, 4, 8, 8.0]])


def three_target_case():
    """A cell contested by several targets (who wins it is mode-specific: see the contested-cell test of each mode).

    Targets (image 0): A = class 0, (8, 2, 8, 4) -> [4, 12] x [0, 4]; B = class 1, same box; C = class 0,
    (8, 4, 16, 8) -> [0, 16] x [0, 8].
    A and B contain no cell centre (centre y = 4 is their bottom edge): no strong cell, every cost has the 1e5.
    C contains centres (4, 4) and (12, 4): cells Y = 0 and X = 1 are strong for C.
    Candidates: every target's centre test keeps x, y in {0, 1, 2} = {0, 1, 2, 4, 5, 6, 8, 9, 10} (so the regular
    mode's union over the image's targets and each fast-mode target's own list are the same block).
    Predictions: Y = cell 0: t = (.5, .5, 0, 0) -> [0, 8]^2;  X = cell 1: default [4, 12] x [-4, 4], cls_1 = 2.
      IoU A|B: X inter [4,12]x[0,4] = 32, union 64 + 32 - 32 = 64 -> 0.5;  Y inter 16, union 80 -> 0.2; others 0.
      IoU C:   Y 64 / 128 = 0.5;  X 32 / 160 = 0.2;  cell 5 ([4,12]^2) 32 / 160 = 0.2;  cells 2, 4, 6: 16 / 176 = 1/11.
    Class cost at X (p_0 = 0.5, p_1 = sqrt(sigmoid(2) / 2) = 0.663625): class 0 -> ln2 - log(1 - p_1) = 1.782656,
    class 1 -> ln2 - log(p_1) = 1.103171. Everywhere else 2 ln2 = 1.386294.
      A: X = 1e5 + 1.782656 + 3 ln2 (2.079442) = 1e5 + 3.862;  Y = 1e5 + 1.386294 + 3 ln5 (4.828314) = 1e5 + 6.215
      B: X = 1e5 + 1.103171 + 2.079442 = 1e5 + 3.183;        Y = 1e5 + 6.215
      C: Y = 1.386294 + 2.079442 = 3.466 (strong);          X = 1.782656 + 4.828314 = 6.611 (strong)
    """
    p = head()
    set_cell(p, 0, box=(0.5, 0.5, 0, 0))
    set_cell(p, 1, cls={1: 2.0})
    targets = torch.tensor([[0, 0, 8, 2, 8, 4], [0, 1, 8, 2, 8, 4], [0, 0, 8, 4, 16, 8.0]])
    return p, targets


def union_case():
    """Targets A = class 0, (28, 28, 8, 8) -> [24, 32]^2 and B = class 1, (8, 8, 4, 4) -> [6, 10]^2.
    A's candidates: |c - 28| < 20 -> x, y in {1, 2, 3}; strong: cell 15 (centre (28, 28)).
    B's candidates: |c - 8| < 20 -> x, y in {0, 1, 2} (28 is exactly 20 away: out); no cell centre in [6, 10]^2.
    Z = cell 7 (x 3, y 1) is a candidate of A only. Predictions:
      Z:      t = (-2, 0, ln .5, ln .5) -> centre ((-2 + 3) * 8, (0 + 1) * 8) = (8, 8), 4x4 = B exactly: IoU_B 1
      cell 5: t = (.5, 0, 0, 0) -> [8, 16] x [4, 12]; with B: inter 2 * 4 = 8, union 16 + 64 - 8 = 72 -> 1/9
      cell 15: default [20, 28]^2; with A: inter 16, union 112 -> 1/7
    """
    p = head()
    set_cell(p, 7, box=(-2.0, 0.0, math.log(0.5), math.log(0.5)))
    set_cell(p, 5, box=(0.5, 0.0, 0, 0))
    targets = torch.tensor([[0, 0, 28, 28, 8, 8], [0, 1, 8, 8, 4, 4.0]])
    return p, targets


@MODES
def test_one_target_assignment(mode):
    p, t = main_case()
    a = make_loss(mode).assign([p], t)
    # k = 2 (regular int(2.534) = 2, fast long(2.788) = 2) -> cells 0 and 4; cell 3 predicts the target exactly but
    # is no candidate
    assert fg_cells(a) == [0, 4]
    expected_gt = torch.full((1, 16), -1, dtype=torch.long)
    expected_gt[0, [0, 4]] = 0
    assert torch.equal(a.matched_gt, expected_gt)
    expected_iou = torch.zeros(1, 16)
    expected_iou[0, 0], expected_iou[0, 4] = 9 / 23, 1.0
    assert_close(a.matched_iou, expected_iou, **IOU_TOL)


@MODES
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_target_components(mode, dtype):
    p, t = main_case(dtype=dtype)
    loss, comps = make_loss(mode)([p], t)
    obj = 16 * LN2 / 2
    # [iou, obj, cls, l1, num_fg / num_gts = 2 / 1, 5 * iou + obj + cls + l1 = 8.825581]
    expected = torch.tensor([MAIN_IOU, obj, MAIN_CLS, 0.0, 2.0, 5 * MAIN_IOU + obj + MAIN_CLS], dtype=dtype)
    assert comps.dtype == dtype and not comps.requires_grad
    assert_close(comps, expected, **TOL[dtype])
    assert_close(loss, expected[5], **TOL[dtype])


@MODES
@pytest.mark.parametrize("empty", [0, 1])
def test_image_without_targets_in_a_batch_of_two(mode, empty):
    # both images carry the main case's predictions; only image 1 - empty has the target
    p, t = main_case(batch=2, image=1 - empty)
    loss_fn = make_loss(mode)
    a = loss_fn.assign([p], t)
    assert not a.fg_mask[empty].any()
    assert (a.matched_gt[empty] == -1).all() and (a.matched_iou[empty] == 0).all()
    assert fg_cells(a, 1 - empty) == [0, 4]
    loss, comps = loss_fn([p], t)
    # same matches (num_fg 2) but objectness now sums 32 cells of ln2: 32 ln2 / 2 = 11.090355
    obj = 32 * LN2 / 2
    expected = torch.tensor([MAIN_IOU, obj, MAIN_CLS, 0.0, 2.0, 5 * MAIN_IOU + obj + MAIN_CLS])
    assert_close(comps, expected, **TOL[torch.float32])


@pytest.mark.parametrize("mode, obj_loss_fix", [("regular", False), ("fast", False), ("fast", True)])
def test_batch_without_any_target(mode, obj_loss_fix):
    p = head(batch=2)
    set_cell(p, 6, b=1, obj=3.0)
    p.requires_grad_(True)
    loss_fn = make_loss(mode, **(dict(obj_loss_fix=True) if obj_loss_fix else {}))  # a fast-mode-only option
    t = torch.zeros(0, 6)
    a = loss_fn.assign([p], t)
    assert not a.fg_mask.any() and (a.matched_gt == -1).all()
    loss, comps = loss_fn([p], t)
    # objectness over 32 cells: 31 at logit 0 (ln2 each), one at 3 (softplus(3) = 3.048587)
    # -> 21.487562 + 3.048587 = 24.536149, divided by num_fg = max(0, 1) = 1, or by B * A = 32 with obj_loss_fix;
    # num_fg / max(num_gts, 1) = 1 / 1
    obj = (31 * LN2 + softplus(3.0)) / (32 if obj_loss_fix else 1)
    assert_close(comps, torch.tensor([0.0, obj, 0.0, 0.0, 1.0, obj]), **TOL[torch.float32])
    assert torch.isfinite(comps).all()
    loss.backward()
    assert (p.grad[..., 4] != 0).all()
    assert (p.grad[..., :4] == 0).all() and (p.grad[..., 5:] == 0).all()


@MODES
def test_use_l1(mode):
    p, t = main_case()
    loss, comps = make_loss(mode, use_l1=True)([p], t)
    # l1 target (cx/s - x, cy/s - y, log(w/s + 1e-8), log(h/s + 1e-8)) against the raw box logits:
    #   cell 0 (x 0, y 0): (0.5, 0.5, ~0, ~0) vs (0.25, 0.25, 0, 0) -> 0.5
    #   cell 4 (x 0, y 1): (0.5, -0.5, ~0, ~0) vs (0.5, -0.5, 0, 0) -> 0
    # l1 = 0.5 / 2 = 0.25; loss = 8.825581 + 0.25
    obj = 16 * LN2 / 2
    expected = torch.tensor([MAIN_IOU, obj, MAIN_CLS, 0.25, 2.0, 5 * MAIN_IOU + obj + MAIN_CLS + 0.25])
    assert_close(comps, expected, **TOL[torch.float32])


@MODES
def test_use_l1_log_size_target(mode):
    # target class 0, (12, 12, 16, 16) -> [4, 20]^2; all logits 0. Strong: cell 5 only (centre 12; 4 and 20 are edges).
    # Every cell is a candidate (|c - 12| <= 16 < 20). IoUs: cells 5, 6, 9, 10 predict 8x8 boxes inside the target:
    # 64 / 256 = 0.25 each, all others 0 -> k = int(1.0) = 1 (fast: long(1.0 * 1.1) = 1) -> cell 5 (the only cost
    # without 1e5).
    p = head()
    t = torch.tensor([[0, 0, 12, 12, 16, 16.0]])
    loss, comps = make_loss(mode, use_l1=True)([p], t)
    # iou: 1 - 0.25^2 = 0.9375;  obj: 16 ln2;  cls: logits (0, 0) vs (0.25, 0): 2 ln2
    # l1 (x 1, y 1): (12/8 - 1, 12/8 - 1, log 2, log 2) vs 0 -> 0.5 + 0.5 + 2 * 0.693147 = 2.386294
    l1 = 1.0 + 2 * math.log(2.0 + 1e-8)
    expected = torch.tensor([0.9375, 16 * LN2, 2 * LN2, l1, 1.0, 5 * 0.9375 + 18 * LN2 + l1])  # loss 19.550443
    assert_close(comps, expected, **TOL[torch.float32])


@MODES
def test_giou(mode):
    p, t = main_case()
    loss, comps = make_loss(mode, iou_type="giou")([p], t)
    # cell 0: [-2, 6]^2 vs [0, 8]^2: iou 9/23, enclosing [-2, 8]^2 = 100, union 92
    #         giou = 9/23 - 8/100 = 0.311304 -> 1 - giou = 0.688696;  cell 4: giou 1 -> 0.  iou term 0.344348
    giou_term = (1 - (9 / 23 - 8 / 100)) / 2
    obj = 16 * LN2 / 2
    expected = torch.tensor([giou_term, obj, MAIN_CLS, 0.0, 2.0, 5 * giou_term + obj + MAIN_CLS])  # loss 8.430117
    assert_close(comps, expected, **TOL[torch.float32])


@MODES
def test_gradients_reach_every_level(mode):
    # strides (8, 16) on 32x32: level 0 is 4x4 (cells 0..15), level 1 is 2x2 (cells 16..19, centres 8 and 24).
    # target class 1, (12, 12, 16, 16) -> [4, 20]^2. Strong: level-0 cell 5 (centre (12, 12)), level-1 cell 16
    # (centre (8, 8)); at stride 16 the radius is 40, so all level-1 cells are candidates.
    # level-1 cell (0,0): t = (.6, .6, 0, 0) -> centre (9.6, 9.6), 16x16 [1.6, 17.6]^2: inter 13.6^2 = 184.96,
    #   union 512 - 184.96 = 327.04 -> IoU 0.565558.  Other IoUs: level-0 cells 5, 6, 9, 10: 0.25 each;
    #   level-1 (1,0), (0,1): 48/464 = 0.103448 each; (1,1): 144/368 = 0.391304.  Sum 2.163758 -> k = 2
    #   (fast: 2.163758 * 1.1 = 2.380134 -> k = 2)
    # -> the two strong cells 5 and 16 (every other cost carries 1e5).
    p0 = head(h=4, w=4)
    p1 = head(h=2, w=2)
    set_cell(p1, 0, box=(0.6, 0.6, 0, 0))
    p0.requires_grad_(True)
    p1.requires_grad_(True)
    t = torch.tensor([[0, 1, 12, 12, 16, 16.0]])
    loss_fn = make_loss(mode, strides=(8, 16))
    a = loss_fn.assign([p0, p1], t)
    assert fg_cells(a) == [5, 16]
    assert_close(a.matched_iou[0, [5, 16]], torch.tensor([0.25, 184.96 / 327.04]), **IOU_TOL)
    loss, _ = loss_fn([p0, p1], t)
    loss.backward()
    for g in (p0.grad, p1.grad):
        assert torch.isfinite(g).all()
        assert (g[..., 4] != 0).all()  # objectness: every cell
    fg0 = torch.zeros(4, 4, dtype=torch.bool)
    fg0[1, 1] = True  # cell 5
    fg1 = torch.zeros(2, 2, dtype=torch.bool)
    fg1[0, 0] = True  # cell 16
    for g, fg in ((p0.grad[0, 0], fg0), (p1.grad[0, 0], fg1)):
        box_moves = (g[..., :4] != 0).any(-1)
        cls_moves = (g[..., 5:] != 0).any(-1)
        assert torch.equal(box_moves, fg) and torch.equal(cls_moves, fg)


def test_bce_class_cost_log_clamp():
    # class-1 logit -200: sigmoid underflows to 0 in float32, p_1 = sqrt(0 * 0.5) = 0, log(0) clamped to -100
    # -> cost = -log(1 - 0.5) + 100 = 100.693147 (finite; without the clamp it would be inf)
    cost = bce_class_cost(torch.tensor([[0.0, -200.0]]), torch.tensor([[0.0]]), torch.tensor([1]), 2)
    assert_close(cost, torch.tensor([100.0 + LN2]))


@MODES
def test_bce_log_clamp_keeps_class_cost_finite(mode):
    # in an assignment: the dynamic-k case with the strong cell 0's class-1 logit at -200 -> cell 0 costs
    # ln2 + 100 = 100.693 + 0 (inf without the clamp, which would drop it behind cells 1 and 4 at 1e5 + ...).
    p, t = dynamic_k_case()
    set_cell(p, 0, cls={1: -200.0})
    loss_fn = make_loss(mode)
    if mode == "regular":
        # k = int(1.933) = 1: cell 0, still far below the 1e5 of every other candidate -> it is still the match.
        cells = [0]
        # iou: cell 0 is exact -> 0; obj 16 ln2; cls: ln2 + BCE-with-logits(-200, 1) = ln2 + 200; loss = 17 ln2 + 200
        expected = torch.tensor([0.0, 16 * LN2, LN2 + 200.0, 0.0, 1.0, 17 * LN2 + 200.0])
    else:
        # k = long(1.933 * 1.1) = 2: cell 0, then cell 1 (1e5 + 2 ln2 + 1.532).
        cells = [0, 1]
        # num_fg 2. iou: cell 0 exact -> 0, cell 1 1 - 0.6^2 = 0.64 -> 0.32;  obj: 16 ln2 / 2
        # cls: cell 0 ln2 + BCE-with-logits(-200, 1) = ln2 + 200; cell 1 logits (0, 0) -> 2 ln2  -> (3 ln2 + 200) / 2
        # loss = 1.6 + 5.545177 + 101.039721 = 108.184898
        cls = (3 * LN2 + 200.0) / 2
        expected = torch.tensor([0.32, 8 * LN2, cls, 0.0, 2.0, 1.6 + 8 * LN2 + cls])
    assert fg_cells(loss_fn.assign([p], t)) == cells
    loss, comps = loss_fn([p], t)
    assert torch.isfinite(comps).all()
    assert_close(comps, expected, **TOL[torch.float32])


@MODES
def test_tuple_input_matches_list(mode):
    p, t = main_case()
    loss_fn = make_loss(mode)
    loss_list, comps_list = loss_fn([p], t)
    loss_tuple, comps_tuple = loss_fn((torch.zeros(3), [p]), t)
    assert_close(loss_tuple, loss_list, rtol=0, atol=0)
    assert_close(comps_tuple, comps_list, rtol=0, atol=0)
    a, b = loss_fn.assign([p], t), loss_fn.assign(("eval output", [p]), t)
    assert torch.equal(a.fg_mask, b.fg_mask) and torch.equal(a.matched_gt, b.matched_gt)
    assert torch.equal(a.matched_iou, b.matched_iou)


@MODES
def test_matched_gt_is_the_slot_within_the_image(mode):
    # two images, targets interleaved in the list: rows 0 and 2 belong to image 1, row 1 to image 0.
    # Each image gets the main case's predictions; image 1's second target (row 2) is the main-case target and
    # its first (row 0) sits far away at (28, 28, 8, 8) (strong cell 15, IoU with the default box there 1/7, k 1).
    # Regular mode: the far target's candidates (x, y in {1, 2, 3}) add cells 7, 11, 13, 14, 15 to image 1's union,
    # all with IoU 0 against the main-case target, so its k stays 2 and it keeps cells 0 and 4. (Fast mode scores
    # each target on its own candidates only.)
    p, _ = main_case(batch=2)
    t = torch.tensor([[1, 0, 28, 28, 8, 8], [0, 1, 4, 4, 8, 8], [1, 1, 4, 4, 8, 8.0]])
    a = make_loss(mode).assign([p], t)
    assert fg_cells(a, 0) == [0, 4] and fg_cells(a, 1) == [0, 4, 15]
    # slot = position among the image's own targets: image 0 -> 0; image 1: row 2 -> slot 1, row 0 -> slot 0
    assert a.matched_gt[0, [0, 4]].tolist() == [0, 0]
    assert a.matched_gt[1, [0, 4, 15]].tolist() == [1, 1, 0]
    loss, comps = make_loss(mode)([p], t)
    # num_fg = 2 + 3 = 5, num_gts = 3 -> num_fg / num_gts = 5/3
    # iou: cell 0 of each image 448/529, cell 15: 1 - (1/7)^2 = 48/49 -> (2 * 0.846881 + 0.979592) / 5 = 0.534671
    # obj: 32 cells at logit 0 -> 32 ln2 / 5
    # cls: each image's main-case pair 2.326402, cell 15 logits (0, 0) vs (1/7, 0) -> 2 ln2 -> 6.039097 / 5 = 1.207819
    iou = (2 * 448 / 529 + 48 / 49) / 5
    obj = 32 * LN2 / 5
    cls = (2 * 2 * MAIN_CLS + 2 * LN2) / 5
    expected = torch.tensor([iou, obj, cls, 0.0, 5 / 3, 5 * iou + obj + cls])
    assert_close(comps, expected, **TOL[torch.float32])


@MODES
def test_in_box_but_outside_radius_is_penalised(mode):
    # target class 0, (4, 4, 64, 8) -> [-28, 36] x [0, 8]. In box: row y = 0 (centre 4), all four cells 0, 1, 2, 3.
    # Centre test: x, y in {0, 1, 2} (28 is 24 from 4). So cell 3 is a candidate (in box) but not strong: its cost
    # carries 1e5 although its centre is inside the box.
    # Predictions: cell 3: t = (-2.5, .5, ln 8, 0) -> centre (4, 4), 64x8 = the target, IoU 1.
    #   Default 8x8 boxes of cells 0, 1, 2 (y [-4, 4]) and 4, 5, 6 (y [4, 12]): inter 8 * 4 = 32, union 544 -> 1/17.
    #   k = 1 (1 + 6/17 = 1.353; x 1.1 = 1.488 in fast mode).
    # Costs: cell 1 has cls_0 = 2: ln2 - log(sqrt(sigmoid(2) / 2)) = 1.103171, + 3 ln 17 (8.499) = 9.602;
    #   cells 0, 2: 2 ln2 + 8.499 = 9.886;  cell 3: 1e5 + 2 ln2.  -> cell 1, not the perfect cell 3.
    p = head()
    set_cell(p, 3, box=(-2.5, 0.5, math.log(8.0), 0.0))
    set_cell(p, 1, cls={0: 2.0})
    t = torch.tensor([[0, 0, 4, 4, 64, 8.0]])
    a = make_loss(mode).assign([p], t)
    assert fg_cells(a) == [1]
    assert_close(a.matched_iou[0, 1], torch.tensor(1 / 17), **IOU_TOL)


@MODES
def test_component_names(mode):
    assert make_loss(mode).component_names == ["iou", "obj", "cls", "l1", "num_fg", "Loss"]
