"""MegviiYoloXLoss (Megvii YOLOX's ``YOLOXHead.get_losses``) on tiny hand-built heads, numbers worked out by hand.

Layout: one level, stride 8, a 32x32 image -> a 4x4 grid, cell index = 4 * y + x, cell centres 4, 12, 20, 28 along
each axis. Radius 1.5 strides = 12 px, strict. With all-zero logits a cell predicts an 8x8 box centred at its
top-left corner (8x, 8y); box logits (tx, ty) = (X / 8 - x, Y / 8 - y) move that centre to (X, Y). With C = 2 and
zero class / objectness logits p = sqrt(0.5 * 0.5) = 0.5 per class, class cost 2 ln2 = 1.386294.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from yolox_export import LossConfig, MegviiYoloXLoss, StaticYoloXLoss
from yolox_export.config import MEGVII_CENTER_RADIUS, MEGVII_OUTSIDE_COST
from yolox_export.grid import make_grid
from yolox_export.reference.megvii import geometry_constraint

LN2 = math.log(2.0)
GRID = make_grid([(4, 4)], (8,))


def head(h=4, w=4, num_classes=2):
    return torch.zeros(1, 1, h, w, 5 + num_classes)


def centre_cells(cx, cy):
    box = torch.tensor([[cx, cy, 8.0, 8.0]])
    return geometry_constraint(box, GRID, MEGVII_CENTER_RADIUS)[0].nonzero().flatten().tolist()


def test_config_of_the_mode():
    config = LossConfig((8,), 2, mode="megvii", center_sampling_radius=4.0)
    assert config.center_radius == 1.5  # hard-coded whatever center_sampling_radius says
    assert config.outside_cost == MEGVII_OUTSIDE_COST == 1e6
    assert config.max_dynamic_k == 10 and config.union_candidates


def test_centre_test_is_strict_and_centre_only():
    # centre (16, 16): cell centres 4 and 28 are exactly 12 px away -> out; 12, 20 in -> cells x, y in {1, 2}
    assert centre_cells(16.0, 16.0) == [5, 6, 9, 10]
    # a hair to the right: 28 is now 11.99 px away -> column 3 joins
    nudged = torch.nextafter(torch.tensor(16.0), torch.tensor(17.0)).item()
    assert centre_cells(nudged, 16.0) == [5, 6, 7, 9, 10, 11]
    # no in-box test: a 32x32 box at the same centre has the same 4 candidates
    wide = geometry_constraint(torch.tensor([[16.0, 16.0, 32.0, 32.0]]), GRID, MEGVII_CENTER_RADIUS)
    assert wide[0].nonzero().flatten().tolist() == [5, 6, 9, 10]


def union_case():
    """Target A (class 0) box (8, 8, 8, 8) = [4, 12]^2, centre cells {0, 1, 4, 5}; target B (class 1) box
    (24, 24, 8, 8) = [20, 28]^2, centre cells {10, 11, 14, 15}. Union U = those 8 cells.

    All 8 union cells predict A's box exactly -> IoU with A = 1 (64 / (64 + 64 - 64)), with B = 0 ([4, 12] and
    [20, 28] do not meet). dynamic k: A = int(8 * 1) = 8 (top-min(10, |U| = 8)); B = clamp(int(0), 1) = 1.
    Cell 15 has cls_1 = 2: p_1 = sqrt(sigmoid(2) / 2) = 0.663625, p_0 = 0.5.
    Costs of B (IoU 0 -> 3 * -log(1e-8) = 55.262042): own cells 1.386294 + 55.262 = 56.648; cell 15
      -log(1 - 0.5) - log(0.663625) = 0.693147 + 0.410036 -> 56.365 (B's cheapest, B takes 15).
    Costs of A: own cells 1.386294 (IoU 1); B's cells + 1e6 (not A's centre cells, but in U: union scoring).
    A takes all 8 union cells, 4 of them at >= 1e6. Cell 15 is contested: argmin(1e6 + 1.78, 56.365) = B.
    Result: A {0, 1, 4, 5, 10, 11, 14}, B {15}.
    """
    level = head()
    for cell in (0, 1, 4, 5, 10, 11, 14, 15):
        y, x = divmod(cell, 4)
        level[0, 0, y, x, 0] = 1.0 - x
        level[0, 0, y, x, 1] = 1.0 - y
    level[0, 0, 3, 3, 6] = 2.0
    targets = torch.tensor([[0.0, 0.0, 8.0, 8.0, 8.0, 8.0], [0.0, 1.0, 24.0, 24.0, 8.0, 8.0]])
    return [level], targets


def test_union_scoring_penalty_and_contested_cell():
    level, targets = union_case()
    a = MegviiYoloXLoss((8,), 2).assign(level, targets)
    assert a.fg_mask[0].nonzero().flatten().tolist() == [0, 1, 4, 5, 10, 11, 14, 15]
    assert a.matched_gt[0, [0, 1, 4, 5, 10, 11, 14]].tolist() == [0] * 7
    assert a.matched_gt[0, 15].item() == 1
    assert a.matched_iou[0, [0, 5, 14]].tolist() == [1.0, 1.0, 1.0] and a.matched_iou[0, 15].item() == 0.0


def test_union_case_loss_by_hand():
    """num_fg = 8. IoU loss: A's 7 cells IoU 1 -> 0; cell 15 vs B IoU 0 -> 1; / 8 = 0.125.
    obj: 16 cells with logit 0 -> 16 ln2 / 8 = 2 ln2. cls: A's 7 cells target (1, 0) at logits (0, 0) -> 2 ln2
    each; cell 15 target one-hot(1) * IoU 0 = (0, 0) at logits (0, 2) -> ln2 + softplus(2); / 8.
    loss = 5 * 0.125 + obj + cls; num_fg / num_gts = 8 / 2."""
    level, targets = union_case()
    loss, comps = MegviiYoloXLoss((8,), 2)(level, targets)
    softplus2 = math.log1p(math.exp(2.0))
    cls = (14 * LN2 + LN2 + softplus2) / 8
    expected = torch.tensor([0.125, 2 * LN2, cls, 0.0, 4.0, 5 * 0.125 + 2 * LN2 + cls])
    assert_close(comps, expected, rtol=1e-5, atol=1e-6)
    assert_close(loss, expected[-1], rtol=1e-5, atol=1e-6)


def test_static_megvii_mode_gives_the_same_hand_case():
    level, targets = union_case()
    want = MegviiYoloXLoss((8,), 2).loss_and_assignment(level, targets)
    got = StaticYoloXLoss((8,), 2, mode="megvii").loss_and_assignment(level, targets)
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        assert torch.equal(getattr(got[2], name), getattr(want[2], name)), name
    assert_close(got[1], want[1], rtol=1e-6, atol=1e-6)


def test_iou_has_no_eps_and_a_strict_overlap_mask():
    """Touching boxes have IoU exactly 0 (the (tl < br) mask), identical boxes exactly 1 (no eps in the union)."""
    level, targets = union_case()
    a = MegviiYoloXLoss((8,), 2).assign(level, targets)
    assert a.matched_iou[0, 0].item() == 1.0  # 64 / 64, no 1e-9 in the denominator
    assert a.matched_iou[0, 15].item() == 0.0


@pytest.mark.filterwarnings("ignore::yolox_export.validation.TargetWarning")  # the box is outside on purpose
def test_image_whose_targets_have_no_centre_cell_gets_no_assignment():
    # centre (-20, 16): nearest column centre 4 is 24 px away > 12 -> no candidate; Megvii's topk would raise
    level = [head()]
    targets = torch.tensor([[0.0, 1.0, -20.0, 16.0, 30.0, 8.0]])
    loss, comps = MegviiYoloXLoss((8,), 2)(level, targets)
    assert not MegviiYoloXLoss((8,), 2).assign(level, targets).fg_mask.any()
    # only the objectness term: 16 background cells at logit 0 -> 16 ln2 / max(0, 1)
    assert_close(comps[1], torch.tensor(16 * LN2), rtol=1e-6, atol=1e-6)
    assert comps[4].item() == 1.0  # Megvii's num_fg = max(0, 1), over num_gts = 1


@pytest.mark.parametrize("use_l1", (False, True))
def test_forward_and_gradients_on_a_scenario(use_l1):
    from yolox_export.scenarios import make_scenario

    s = make_scenario("fitted", batch_size=2, image_size=(128, 128), num_classes=5, seed=1)
    preds = [p.clone().requires_grad_(True) for p in s.predictions]
    loss, comps = MegviiYoloXLoss(s.strides, 5, use_l1=use_l1)(preds, s.targets)
    loss.backward()
    assert torch.isfinite(comps).all() and (comps[3] > 0) == use_l1
    assert all(torch.isfinite(p.grad).all() for p in preds)
