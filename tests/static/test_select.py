"""The static module's structural rules: static shapes, no [B, G, A, C] tensor, tie rule by construction,
padding and batch-order invariance, float32 assignment under low precision, no gradient through the assignment."""

import pytest
import torch

from support import LargestTensor
from yolox_export import LossConfig, PaddedYoloXLoss, StaticYoloXLoss, pad_targets
from yolox_export.grid import flatten_levels, level_shapes
from yolox_export.scenarios import make_scenario
from yolox_export.static.select import first_argmin, select_cheapest

MODES = ("regular", "fast", "megvii")


def padded_inputs(scenario, max_gt=None):
    raw = flatten_levels(scenario.predictions)
    gt, mask = pad_targets(scenario.targets, scenario.batch_size, max_gt)
    return raw, gt, mask


def test_select_cheapest_takes_lower_cell_index_among_equal_costs():
    # costs of one target over 6 cells; three cells tie at 1.0
    cost = torch.tensor([[[3.0, 1.0, 2.0, 1.0, 1.0, 5.0]]])
    cand = torch.ones_like(cost, dtype=torch.bool)
    # k = 2: both picks come from the tie at 1.0, cells 1 and 3 (lowest indices), not 4
    assert select_cheapest(cost, cand, torch.tensor([[2]]), 10)[0, 0].tolist() == [False, True, False, True, False, False]
    # k = 4: all three 1.0 cells, then the 2.0 at cell 2
    assert select_cheapest(cost, cand, torch.tensor([[4]]), 10)[0, 0].tolist() == [False, True, True, True, True, False]


def test_select_cheapest_never_selects_non_candidates_even_when_k_exceeds_them():
    inf = float("inf")
    cost = torch.tensor([[[0.5, inf, 0.7, inf]]])
    cand = torch.tensor([[[True, False, True, False]]])
    # k = 3 > 2 candidates (fast mode's k can exceed them): both candidates, nothing else
    assert select_cheapest(cost, cand, torch.tensor([[3]]), 11)[0, 0].tolist() == [True, False, True, False]


def test_first_argmin_takes_lower_target_index_among_equal_costs():
    # [G=3, A=2]: cell 0 ties between targets 1 and 2, cell 1 has a unique minimum at target 0
    values = torch.tensor([[[4.0, 1.0], [2.0, 3.0], [2.0, 3.0]]])
    best, first = first_argmin(values, dim=1)
    assert best.tolist() == [[2.0, 1.0]]
    assert first.tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("mode", MODES)
def test_extra_padding_changes_nothing(mode):
    s = make_scenario("coco", batch_size=3, image_size=(320, 320), num_classes=20, seed=3)
    model = StaticYoloXLoss(s.strides, 20, mode=mode)
    raw, gt, mask = padded_inputs(s)
    shapes = level_shapes(s.predictions)
    tight = model.forward_padded(raw, gt, mask, shapes)
    # 7 more padded slots filled with garbage boxes: masked out, so they must not matter
    junk = torch.tensor([3.0, 100.0, 100.0, 50.0, 50.0]).expand(gt.shape[0], 7, 5)
    loose = model.forward_padded(raw, torch.cat((gt, junk), 1), torch.cat((mask, torch.zeros(gt.shape[0], 7, dtype=torch.bool)), 1), shapes)
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        torch.testing.assert_close(getattr(loose.assignment, name), getattr(tight.assignment, name), rtol=0, atol=0)
    torch.testing.assert_close(loose.components, tight.components, rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_permuted_batch_permutes_the_result(mode):
    s = make_scenario("fitted", batch_size=4, image_size=(320, 320), num_classes=20, seed=5)
    model = StaticYoloXLoss(s.strides, 20, mode=mode)
    raw, gt, mask = padded_inputs(s)
    shapes = level_shapes(s.predictions)
    perm = torch.tensor([2, 0, 3, 1])
    base = model.forward_padded(raw, gt, mask, shapes).assignment
    permuted = model.forward_padded(raw[perm], gt[perm], mask[perm], shapes).assignment
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        torch.testing.assert_close(getattr(permuted, name), getattr(base, name)[perm], rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_no_b_g_a_c_tensor_is_materialised(mode):
    # B=2, G=30, A=2100 (320x320), C=80: B*G*A*C = 10.1M; legitimate tensors are at most ~12 * B*G*A = 1.5M
    s = make_scenario("crowded", batch_size=2, image_size=(320, 320), num_classes=80, seed=1)
    model = StaticYoloXLoss(s.strides, 80, mode=mode, max_gt=None)
    raw, gt, mask = padded_inputs(s)
    gt, mask = gt[:, :30], mask[:, :30]
    with LargestTensor() as probe:
        model.forward_padded(raw, gt, mask, level_shapes(s.predictions))
    b, g, a, c = 2, 30, raw.shape[1], 80
    assert probe.largest < b * g * a * c // 4, (probe.largest, b * g * a * c)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
@pytest.mark.parametrize("mode", MODES)
def test_low_precision_predictions_give_the_float32_assignment(mode, dtype):
    s = make_scenario("fitted", batch_size=2, image_size=(320, 320), num_classes=20, seed=2)
    model = StaticYoloXLoss(s.strides, 20, mode=mode)
    low = [p.to(dtype) for p in s.predictions]
    expected = model.assign([p.float() for p in low], s.targets)
    # CPU autocast supports bfloat16 only (its torch.cat rejects float16 inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        got = model.assign(low, s.targets)
        loss, components = model(low, s.targets)
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=0)
    assert getattr(got, "matched_iou").dtype == torch.float32
    assert torch.isfinite(components).all()


@pytest.mark.parametrize("mode", MODES)
def test_gradients_flow_through_the_loss_not_the_assignment(mode):
    s = make_scenario("fitted", batch_size=2, image_size=(320, 320), num_classes=20, seed=4)
    preds = [p.clone().requires_grad_(True) for p in s.predictions]
    model = StaticYoloXLoss(s.strides, 20, mode=mode, use_l1=True)
    out = model.forward_padded(flatten_levels(preds), *pad_targets(s.targets, 2), level_shapes(preds), with_targets=True)
    for t in (out.assignment.fg_mask, out.assignment.matched_gt, out.assignment.matched_iou, out.cls_target):
        assert not t.requires_grad
    out.loss.backward()
    for p in preds:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_torch_export_with_dynamic_batch_and_targets(mode):
    s = make_scenario("coco", batch_size=2, image_size=(128, 128), num_classes=5, seed=0)
    config = LossConfig(s.strides, 5, mode=mode)
    module = PaddedYoloXLoss(config, level_shapes(s.predictions))
    raw, gt, mask = padded_inputs(s)
    batch, targets = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("max_gt", min=1, max=512)
    exported = torch.export.export(module, (raw, gt, mask),
                                   dynamic_shapes=({0: batch}, {0: batch, 1: targets}, {0: batch, 1: targets}))
    # run the exported program at other sizes than traced, against eager
    s2 = make_scenario("coco", batch_size=3, image_size=(128, 128), num_classes=5, seed=1)
    raw2, gt2, mask2 = padded_inputs(s2, max_gt=40)
    got = exported.module()(raw2, gt2, mask2)
    want = module(raw2, gt2, mask2)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_torch_compile_fullgraph_runs(mode):
    s = make_scenario("coco", batch_size=2, image_size=(128, 128), num_classes=5, seed=0)
    module = PaddedYoloXLoss(LossConfig(s.strides, 5, mode=mode), level_shapes(s.predictions))
    raw, gt, mask = padded_inputs(s, max_gt=30)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    got, want = compiled(raw, gt, mask), module(raw, gt, mask)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
