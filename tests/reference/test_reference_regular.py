"""RegularYoloXLoss (super-gradients' ``YoloXDetectionLoss``): its own rules, on tiny hand-built heads, every number
worked out by hand. What it shares with FastYoloXLoss (layout, cases and shared tests) is in test_reference_common.py.

* Candidates are the union over the image's targets of each target's in-box / in-centre cells; every target is scored
  on that union. The centre radius is ``center_sampling_radius`` strides (2.5 -> 20 px), the test is strict.
* dynamic k = max(int(sum of the target's top-10 IoUs over the union), 1).
* A cell kept by several targets goes to the argmin of its cost over ALL the image's targets.
"""

import torch
from torch.testing import assert_close

from yolox_export import RegularYoloXLoss
from yolox_export.grid import make_grid
from yolox_export.reference.regular import dynamic_k_matching, in_boxes_info

from support import IOU_TOL, fg_cells, set_cell
from test_reference_common import dynamic_k_case, three_target_case, union_case


def test_candidate_tests_are_strict_on_box_edges_and_radius():
    grid = make_grid([(4, 4)], [8])
    # target (4, 4, 8, 8): box (0, 8) holds centre 4 only; radius: 4, 12, 20 within 20 of 4, 28 is 24 away
    in_box, in_centre = in_boxes_info(torch.tensor([[4.0, 4, 8, 8]]), grid, 2.5)
    assert in_box[0].nonzero().squeeze(1).tolist() == [0]
    assert in_centre[0].nonzero().squeeze(1).tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    # target (8, 8, 8, 8): box [4, 12] has centres 4 and 12 exactly on its edges -> no cell is in the box;
    # centre 28 is exactly 20 = 2.5 * 8 from 8 -> out (strict); 4, 12, 20 are 4, 4, 12 away -> in
    in_box, in_centre = in_boxes_info(torch.tensor([[8.0, 8, 8, 8]]), grid, 2.5)
    assert not in_box.any()
    assert in_centre[0].nonzero().squeeze(1).tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    # radius 5 -> 40 px: every centre of the 4x4 grid is within 40 of (8, 8)
    _, in_centre = in_boxes_info(torch.tensor([[8.0, 8, 8, 8]]), grid, 5.0)
    assert in_centre.all()


def test_dynamic_k_is_int_of_top_iou_sum():
    p, t = dynamic_k_case()
    # int(1.933333) = 1 (not rounded to 2): only the cheapest cell, 0
    a = RegularYoloXLoss([8], 2).assign([p], t)
    assert fg_cells(a) == [0]
    assert_close(a.matched_iou[0, 0], torch.tensor(1.0), **IOU_TOL)
    # move cell 4 to t_y = -0.1875 -> centre (4, 6.5), [0, 8] x [2.5, 10.5]: inter 8 * 5.5 = 44, union 84, IoU 11/21
    # sum = 1 + 0.6 + 0.523810 = 2.123810 -> k = 2: cell 0, then cell 1 (IoU 0.6, cheaper than 11/21)
    set_cell(p, 4, box=(0.5, -0.1875, 0, 0))
    a = RegularYoloXLoss([8], 2).assign([p], t)
    assert fg_cells(a) == [0, 1]
    assert_close(a.matched_iou[0, [0, 1, 4]], torch.tensor([1.0, 0.6, 0.0]), **IOU_TOL)


def test_dynamic_k_sums_only_the_top_ten_ious():
    # one target, 12 candidates, each IoU 0.19: top-10 sum = 1.9 -> k = 1 (all 12 would give 2.28 -> k = 2)
    ious = torch.full((1, 12), 0.19)
    cost = torch.arange(12.0).unsqueeze(0)  # cell 0 cheapest
    assert dynamic_k_matching(cost, ious)[0].nonzero().squeeze(1).tolist() == [0]
    # fewer than 10 candidates: all are summed, 3 * 0.7 = 2.1 -> k = 2; a sum < 1 still gives k = 1
    assert dynamic_k_matching(torch.arange(3.0).unsqueeze(0), torch.full((1, 3), 0.7)).sum() == 2
    assert dynamic_k_matching(torch.arange(3.0).unsqueeze(0), torch.full((1, 3), 0.1)).sum() == 1


def test_contested_cell_goes_to_argmin_over_all_targets():
    # three_target_case: k_A = k_B = int(0.7) -> 1;  k_C = int(0.5 + 0.2 + 0.2 + 3/11 = 1.172727) = 1.
    # A and B each take X; C takes Y. X is contested -> argmin of its cost over ALL targets (A, B, C) = C (6.611),
    # although C did not select X.
    p, t = three_target_case()
    a = RegularYoloXLoss([8], 2).assign([p], t)
    assert fg_cells(a) == [0, 1]
    # both cells end with C (slot 2); X's IoU is C's 0.2, not B's 0.5
    assert a.matched_gt[0, [0, 1]].tolist() == [2, 2]
    assert_close(a.matched_iou[0, [0, 1]], torch.tensor([0.5, 0.2]), **IOU_TOL)
    assert (a.matched_gt[0, 2:] == -1).all()


def test_candidates_are_the_union_over_the_images_targets():
    p, t = union_case()
    a = RegularYoloXLoss([8], 2).assign([p], t)
    # B is scored on the union (all cells but 3 and 12): IoUs Z 1, cell 5 1/9 -> k = int(1.111) = 1; all B's costs
    # carry 1e5, Z's 1e5 + 2 ln2 beats cell 5's 1e5 + 2 ln2 + 3 ln 9 -> B takes Z although Z is only A's candidate.
    # A: k = int(1/7) -> clamped to 1, its strong cell 15.
    assert fg_cells(a) == [7, 15]
    assert a.matched_gt[0, [7, 15]].tolist() == [1, 0]
    assert_close(a.matched_iou[0, [7, 15]], torch.tensor([1.0, 1 / 7]), **IOU_TOL)


def test_center_sampling_radius_changes_candidates():
    p, _ = union_case()
    t = torch.tensor([[0, 1, 8, 8, 4, 4.0]])  # B alone
    # radius 2.5: Z (centre x 28, 20 px away) is out; candidates' IoUs: cell 5 1/9 -> k = max(int(0.111), 1) = 1 -> cell 5
    a = RegularYoloXLoss([8], 2, center_sampling_radius=2.5).assign([p], t)
    assert fg_cells(a) == [5]
    assert_close(a.matched_iou[0, 5], torch.tensor(1 / 9), **IOU_TOL)
    # radius 5 (40 px): all 16 cells are candidates, Z (IoU 1) is the cheapest penalised cell
    a = RegularYoloXLoss([8], 2, center_sampling_radius=5.0).assign([p], t)
    assert fg_cells(a) == [7]
    assert_close(a.matched_iou[0, 7], torch.tensor(1.0), **IOU_TOL)
