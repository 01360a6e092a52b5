"""static/loss.py: the non-finite marks (the same in eager and in the exported form), and the one loss path
(``validate`` checks and raises, it never picks the arithmetic)."""

import pytest
import torch

from support import onnx_export_answers
from yolox_export import LossConfig, StaticYoloXLoss, pad_targets
from yolox_export.config import MODES
from yolox_export.grid import flatten_levels, level_shapes, make_grid
from yolox_export.scenarios import make_scenario
from yolox_export.static.padded import masked_loss, nonfinite_marks, reference_loss

from support import LN2, MAIN_CLS, MAIN_IOU, TOL, box_format_of, main_case


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


def loss_and_gradients(module, predictions, targets):
    leaves = [p.clone().requires_grad_() for p in predictions]
    loss, components = module(leaves, targets)
    return loss, components, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("max_gt", [None, 128])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("use_l1", [False, True])
def test_validation_only_checks_it_never_changes_the_arithmetic(mode, max_gt, use_l1):
    """Same construction but ``validate``: loss, components and gradients bit for bit, on a trained-looking batch
    (predicted boxes near their targets) and a crowded one."""
    for kind in ("fitted", "crowded"):
        scenario = make_scenario(kind, batch_size=2, image_size=(96, 128), num_classes=5, seed=3,
                                 box_format=box_format_of(mode))
        if max_gt is not None:
            assert int(torch.bincount(scenario.targets[:, 0].long()).max()) <= max_gt, "the batch must fit max_gt"
        checked, unchecked = (StaticYoloXLoss(scenario.strides, 5, mode=mode, use_l1=use_l1, max_gt=max_gt,
                                              validate=v) for v in (True, False))
        assert checked.loss_form is unchecked.loss_form is (reference_loss if max_gt is None else masked_loss)
        loss, components, grads = loss_and_gradients(checked, scenario.predictions, scenario.targets)
        loss_u, components_u, grads_u = loss_and_gradients(unchecked, scenario.predictions, scenario.targets)
        assert torch.equal(loss, loss_u) and torch.equal(components, components_u), kind
        for g, g_u in zip(grads, grads_u):
            assert torch.equal(g, g_u), f"{kind}: {int((g != g_u).sum())} gradient elements differ"


@pytest.mark.parametrize("use_l1", [False, True])
def test_megvii_adapter_validation_only_checks(use_l1):
    from yolox_export.integrations.megvii import MegviiLoss

    scenario = make_scenario("fitted", batch_size=2, image_size=(96, 128), num_classes=5, seed=3)
    outputs = flatten_levels(scenario.predictions)  # taken as decoded boxes here: only the arithmetic is compared
    outputs = torch.cat((outputs[..., :2].sigmoid() * 96, outputs[..., 2:4].exp() * 8, outputs[..., 4:]), -1)
    labels, mask = pad_targets(scenario.targets, 2)
    labels = labels * mask.unsqueeze(-1)
    shapes = level_shapes(scenario.predictions)
    grid = make_grid(shapes, scenario.strides)
    sizes = [h * w for h, w in shapes]
    shifts = [t.reshape(1, -1) for t in grid.x_shifts.split(sizes)], [t.reshape(1, -1) for t in grid.y_shifts.split(sizes)]
    strides = [t.reshape(1, -1) for t in grid.strides.split(sizes)]
    origin = [t for t in flatten_levels(scenario.predictions)[..., :4].split(sizes, 1)]
    results = []
    for validate in (True, False):
        leaf = outputs.clone().requires_grad_()
        loss_fn = MegviiLoss(5, scenario.strides, use_l1=use_l1, validate=validate)
        loss, *parts = loss_fn.get_losses(None, *shifts, strides, labels, leaf, origin)
        results.append((loss, parts, torch.autograd.grad(loss, leaf)[0]))
    (loss, parts, grad), (loss_u, parts_u, grad_u) = results
    assert torch.equal(loss, loss_u) and torch.equal(grad, grad_u)
    for p, p_u in zip(parts, parts_u):
        assert torch.equal(torch.as_tensor(p), torch.as_tensor(p_u))


# ---------------------------------------------------------------------------------------------------------------
# image_loss: each image's share of the loss


@pytest.mark.parametrize("max_gt", [None, 4])  # the references' packed loss, and the graph's matched-cell buffer
# the modes support.main_case is worked out for; obj_loss_fix is fast mode's option
@pytest.mark.parametrize("mode,obj_loss_fix", [("regular", False), ("fast", False), ("fast", True)])
def test_image_loss_hand_worked(mode, max_gt, obj_loss_fix):
    # main_case in a batch of two, the target in image 0; both images carry the same predictions, so each has 16
    # objectness terms of ln2 (every objectness logit 0). num_fg = 2 (image 0's cells 0 and 4).
    #   image 0: 5 * iou + 16 ln2 / d + cls;  image 1 (no target): 16 ln2 / d;  d = num_fg = 2, or B·A = 32 with
    #   fast's obj_loss_fix
    p, t = main_case(batch=2, image=0)
    static = StaticYoloXLoss([8], 2, mode=mode, max_gt=max_gt, obj_loss_fix=obj_loss_fix)
    out = static.forward_padded(flatten_levels([p]), *pad_targets(t, 2, max_gt), level_shapes([p]))
    obj = 16 * LN2 / (32 if obj_loss_fix else 2)
    expected = torch.tensor([5 * MAIN_IOU + obj + MAIN_CLS, obj])
    torch.testing.assert_close(out.image_loss, expected, **TOL[torch.float32])
    torch.testing.assert_close(out.image_loss.sum(), out.loss, **TOL[torch.float32])


def image_loss_of(mode, scenario, max_gt, **options):
    static = StaticYoloXLoss(scenario.strides, 5, mode=mode, max_gt=max_gt, validate=False, **options)
    raw = flatten_levels(scenario.predictions).requires_grad_()
    gt, mask = pad_targets(scenario.targets, scenario.batch_size, max_gt, box_format=static.config.box_format)
    return static.forward_padded(raw, gt, mask, level_shapes(scenario.predictions)), raw, gt, mask


@pytest.mark.parametrize("max_gt", [None, 40])
@pytest.mark.parametrize("mode", MODES)
def test_image_loss_sums_to_the_loss_and_follows_a_permutation_of_the_images(mode, max_gt):
    scenario = make_scenario("coco", batch_size=4, image_size=(96, 128), num_classes=5, seed=2,
                             box_format=box_format_of(mode))
    options = dict(use_l1=True, obj_loss_fix=True) if mode == "fast" else dict(use_l1=True)
    out, raw, gt, mask = image_loss_of(mode, scenario, max_gt, **options)
    assert out.image_loss.shape == (4,)
    torch.testing.assert_close(out.image_loss.sum(), out.loss, rtol=1e-6, atol=0)  # float32, ~B additions apart
    order = torch.tensor([2, 0, 3, 1])
    static = StaticYoloXLoss(scenario.strides, 5, mode=mode, max_gt=max_gt, validate=False, **options)
    permuted = static.forward_padded(raw.detach()[order], gt[order], mask[order], level_shapes(scenario.predictions))
    torch.testing.assert_close(permuted.image_loss, out.image_loss[order], rtol=1e-6, atol=0)
    (grad,) = torch.autograd.grad(out.image_loss[1], raw)  # an image's share depends on that image's outputs alone
    assert grad[1].abs().sum() > 0 and not grad[[0, 2, 3]].any()


@pytest.mark.parametrize("mode", MODES)
def test_packed_and_buffered_image_losses_agree(mode):
    scenario = make_scenario("crowded", batch_size=2, image_size=(96, 128), num_classes=5, seed=1,
                             box_format=box_format_of(mode))
    packed, buffered = (image_loss_of(mode, scenario, max_gt, use_l1=True)[0] for max_gt in (None, 200))
    assert torch.equal(packed.assignment.matched_gt, buffered.assignment.matched_gt)
    torch.testing.assert_close(packed.image_loss, buffered.image_loss, **TOL[torch.float32])


@pytest.mark.parametrize("max_gt", [None, 40])
@pytest.mark.parametrize("mode", MODES)
def test_a_non_finite_output_makes_every_image_loss_nan(mode, max_gt):
    scenario = make_scenario("coco", batch_size=3, image_size=(96, 128), num_classes=5, seed=2,
                             box_format=box_format_of(mode))
    scenario.predictions[1][2, 0, 1, 1, 6] = float("nan")  # one class logit of image 2
    out = image_loss_of(mode, scenario, max_gt)[0]
    assert out.image_loss.isnan().all() and out.loss.isnan()


# ---------------------------------------------------------------------------------------------------------------
# PaddedYoloXLoss(with_grad=True): d loss / d predictions as an output


@pytest.mark.parametrize("mode", MODES)
def test_padded_module_gradient_output_is_autograd_of_its_loss(mode):
    from yolox_export import PaddedYoloXLoss

    scenario = make_scenario("coco", batch_size=2, image_size=(64, 96), num_classes=5, seed=4,
                             box_format=box_format_of(mode))
    raw = flatten_levels(scenario.predictions)
    gt, mask = pad_targets(scenario.targets, 2, box_format=LossConfig((8,), 1, mode=mode).box_format)
    shapes = level_shapes(scenario.predictions)
    leaf = raw.clone().requires_grad_()
    # the drop-in with G fixed runs the same padded loss (the graph's matched-cell buffer)
    want = StaticYoloXLoss(scenario.strides, 5, mode=mode, use_l1=True, max_gt=gt.shape[1]).forward_padded(
        leaf, gt, mask, shapes)
    (want_grad,) = torch.autograd.grad(want.loss, leaf)
    with torch.no_grad():  # the gradient output needs no grad mode from the caller
        outputs = PaddedYoloXLoss(LossConfig(scenario.strides, 5, mode=mode, use_l1=True), shapes,
                                  with_grad=True)(raw, gt, mask)
    fg_mask, matched_gt, matched_iou, components, image_loss, _, _, grad = outputs  # _, _: target_k, target_cells
    assert torch.equal(matched_gt, want.assignment.matched_gt) and torch.equal(components, want.components)
    assert torch.equal(image_loss, want.image_loss.detach()) and not image_loss.requires_grad
    assert torch.equal(grad, want_grad)
