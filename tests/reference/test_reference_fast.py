"""FastYoloXLoss (super-gradients' ``YoloXFastDetectionLoss``): its own rules, on tiny hand-built heads, every number
worked out by hand. What it shares with RegularYoloXLoss (layout, cases and shared tests) is in
test_reference_common.py.

* Fast mode's radius is 2.5 strides = 20 px whatever ``center_sampling_radius`` says; the test is strict, so a cell
  centre exactly 20 px away is out. Candidates are per target.
* dynamic k = max(long(sum of the target's own top-10 candidate IoUs * dynamic_ks_bias), 1), bias 1.1 by default.
* A cell kept by several targets goes to the cheapest of the targets that kept it.
* ``obj_loss_fix`` divides the objectness sum by B * A instead of num_fg.
"""

import pytest
import torch
from torch.testing import assert_close

from yolox_export import FastYoloXLoss
from yolox_export.grid import make_grid
from yolox_export.reference.fast import initial_candidates, per_target_dynamic_ks

from support import IOU_TOL, LN2, MAIN_CLS, MAIN_IOU, TOL, fg_cells, main_case
from test_reference_common import dynamic_k_case, three_target_case, union_case


def candidate_cells(gt_boxes):
    """{target: sorted candidate cells} and {target: sorted strong cells} from ``initial_candidates``."""
    gt_ids, cell_ids, strong = initial_candidates(torch.tensor(gt_boxes), make_grid([(4, 4)], [8]))
    cands, strongs = {}, {}
    for g, c, s in zip(gt_ids.tolist(), cell_ids.tolist(), strong.tolist()):
        cands.setdefault(g, []).append(c)
        if s:
            strongs.setdefault(g, []).append(c)
    return {g: sorted(v) for g, v in cands.items()}, {g: sorted(v) for g, v in strongs.items()}


def test_candidates_are_per_target_and_strict():
    # target 0 (4, 4, 8, 8): centre test keeps x, y in {0, 1, 2}; box (0, 8) holds centre 4 only -> strong {0}
    # target 1 (8, 8, 8, 8): box [4, 12] has centres 4 and 12 on its edges -> no strong cell; centre 28 is exactly
    #   20 from 8 -> out; same 3x3 block
    # target 2 (28, 28, 8, 8): |c - 28| < 20 -> 12, 20, 28 -> x, y in {1, 2, 3}; box (24, 32) holds 28 -> strong {15}
    cands, strongs = candidate_cells([[4.0, 4, 8, 8], [8.0, 8, 8, 8], [28.0, 28, 8, 8]])
    block = [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert cands == {0: block, 1: block, 2: [5, 6, 7, 9, 10, 11, 13, 14, 15]}
    assert strongs == {0: [0], 2: [15]}


@pytest.mark.parametrize(
    "bias, cells",
    [
        (1.0, [0]),  # long(1.933333) = 1
        (1.1, [0, 1]),  # long(2.126667) = 2, where regular mode takes 1
        (1.6, [0, 1, 4]),  # long(3.093333) = 3
    ],
)
def test_dynamic_k_is_long_of_biased_top_iou_sum(bias, cells):
    p, t = dynamic_k_case()
    a = FastYoloXLoss([8], 2, dynamic_ks_bias=bias).assign([p], t)
    assert fg_cells(a) == cells
    expected = {0: 1.0, 1: 0.6, 4: 1 / 3}
    assert_close(a.matched_iou[0, cells], torch.tensor([expected[c] for c in cells]), **IOU_TOL)


def test_dynamic_ks_per_target_top_ten_and_bias():
    # candidate list, targets interleaved: target 0 has 12 candidates of IoU 0.19, target 1 two of IoU 0.95,
    # target 2 has none.
    gt_ids = torch.tensor([0, 1] + [0] * 11 + [1])
    ious = torch.tensor([0.19, 0.95] + [0.19] * 11 + [0.95])
    # bias 1.0: target 0 sums its top 10 only: 1.9 -> 1 (all 12 would give 2.28 -> 2); target 1: 1.9 -> 1;
    #           target 2: 0 -> clamped to 1
    assert per_target_dynamic_ks(gt_ids, ious, 1.0, 3).tolist() == [1, 1, 1]
    # bias 1.1: target 0: 1.9 * 1.1 = 2.09 -> 2; target 1: 2.09 -> 2 (long(1.9) * 1.1 would be 1)
    assert per_target_dynamic_ks(gt_ids, ious, 1.1, 3).tolist() == [2, 2, 1]
    # 12 candidates of IoU 1: top-10 sum 10 * 1.1 = 11 -> k = 11, the fast mode's maximum at bias 1.1
    assert per_target_dynamic_ks(torch.zeros(12, dtype=torch.long), torch.ones(12), 1.1, 1).tolist() == [11]


def test_contested_cell_goes_to_cheapest_of_the_targets_that_kept_it():
    # three_target_case, each target scored on its own candidates:
    # k_A = k_B = long(0.7 * 1.1) -> 1;  k_C = long(1.172727 * 1.1 = 1.29) = 1.
    # A and B each keep X; C keeps Y. X goes to the cheaper of A and B, i.e. B -- not to C (regular mode's answer),
    # which is cheaper still at X but did not keep it.
    p, t = three_target_case()
    a = FastYoloXLoss([8], 2).assign([p], t)
    assert fg_cells(a) == [0, 1]
    # Y -> C (slot 2, IoU 0.5); X -> B (slot 1, IoU 0.5)
    assert a.matched_gt[0, [0, 1]].tolist() == [2, 1]
    assert_close(a.matched_iou[0, [0, 1]], torch.tensor([0.5, 0.5]), **IOU_TOL)
    assert (a.matched_gt[0, 2:] == -1).all()


def test_target_only_sees_its_own_candidates():
    p, t = union_case()
    a = FastYoloXLoss([8], 2).assign([p], t)
    # B scores only its own 3x3 block: IoUs cell 5 1/9, others 0 -> k = max(long(0.111 * 1.1), 1) = 1 -> cell 5
    # (regular mode, scoring the union, gives B the cell Z instead). A: k = 1, strong cell 15.
    assert fg_cells(a) == [5, 15]
    assert a.matched_gt[0, [5, 15]].tolist() == [1, 0]
    assert_close(a.matched_iou[0, [5, 15]], torch.tensor([1 / 9, 1 / 7]), **IOU_TOL)


@pytest.mark.parametrize("radius", [2.5, 5.0])
def test_center_radius_is_hard_coded(radius):
    p, _ = union_case()
    t = torch.tensor([[0, 1, 8, 8, 4, 4.0]])  # B alone
    # at radius 5 Z would be a candidate (regular mode picks it); fast mode keeps 2.5 -> cell 5 either way
    a = FastYoloXLoss([8], 2, center_sampling_radius=radius).assign([p], t)
    assert fg_cells(a) == [5]
    assert_close(a.matched_iou[0, 5], torch.tensor(1 / 9), **IOU_TOL)


def test_obj_loss_fix_divides_objectness_by_all_cells():
    # the batch of two of test_image_without_targets_in_a_batch_of_two (target in image 0): with obj_loss_fix the
    # objectness sum 32 ln2 is divided by B * A = 2 * 16 = 32 -> ln2; iou and cls keep num_fg = 2.
    # loss = 5 * 0.423440 + 0.693147 + 1.163201 = 3.973550
    p, t = main_case(batch=2, image=0)
    loss, comps = FastYoloXLoss([8], 2, obj_loss_fix=True)([p], t)
    expected = torch.tensor([MAIN_IOU, LN2, MAIN_CLS, 0.0, 2.0, 5 * MAIN_IOU + LN2 + MAIN_CLS])
    assert_close(comps, expected, **TOL[torch.float32])
