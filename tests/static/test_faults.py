"""Nothing silent: each fault class gives a clear error (validating) or a visibly bad result (sync-free), never a
quietly wrong one. A NaN loss alone is not enough: an optimizer or a mixed-precision scaler steps on gradients, so
every gradient element with respect to the predictions must be NaN too."""

import pytest
import torch

from yolox_export import StaticYoloXLoss
from yolox_export.config import MODES
from yolox_export.scenarios import make_scenario

from support import box_format_of

CLASSES = 3
FAULTS = ("more targets than max_gt", "class id out of range", "fractional class id", "fractional image index",
          "image index out of range", "NaN class logit", "infinite box logit")


def faulty_batch(fault: str, mode: str):
    """(predictions, targets, max_gt) of a small COCO-like batch (targets in ``mode``'s box format) with one fault
    planted."""
    scenario = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=CLASSES, seed=0,
                             box_format=box_format_of(mode))
    predictions = [p.clone() for p in scenario.predictions]
    targets = scenario.targets.clone()
    most = int(torch.bincount(targets[:, 0].long()).max())
    max_gt = most + 2
    if fault == "more targets than max_gt":
        max_gt = most - 1
    elif fault == "class id out of range":
        targets[0, 1] = CLASSES
    elif fault == "fractional class id":
        targets[0, 1] = 0.5
    elif fault == "fractional image index":
        targets[0, 0] = 0.5  # would be read as image 0 if truncated
    elif fault == "image index out of range":
        targets[0, 0] = 2.0
    elif fault == "NaN class logit":
        predictions[1][1, 0, 0, 1, 5] = float("nan")
    elif fault == "infinite box logit":
        predictions[2][0, 0, 0, 0, 2] = float("inf")
    return predictions, targets, max_gt


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
def test_sync_free_fault_poisons_loss_components_and_every_gradient(mode, fault):
    predictions, targets, max_gt = faulty_batch(fault, mode)
    loss_fn = StaticYoloXLoss((8, 16, 32), CLASSES, mode=mode, max_gt=max_gt, validate=False)
    leaves = [p.requires_grad_() for p in predictions]
    loss, components = loss_fn(leaves, targets)
    assert torch.isnan(loss)
    assert torch.isnan(components[[0, 1, 2, 5]]).all(), components  # iou, obj, cls, loss (l1 is 0 without L1)
    for level, grad in enumerate(torch.autograd.grad(loss, leaves)):
        assert torch.isnan(grad).all(), f"level {level}: {int((~torch.isnan(grad)).sum())} finite gradient elements"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
def test_validating_call_raises_naming_the_fault(mode, fault):
    predictions, targets, max_gt = faulty_batch(fault, mode)
    loss_fn = StaticYoloXLoss((8, 16, 32), CLASSES, mode=mode, max_gt=max_gt)
    with pytest.raises(ValueError, match=r"image|class|row|non-finite|targets"):
        loss_fn(predictions, targets)


@pytest.mark.parametrize("mode", MODES)
def test_valid_batch_gradients_are_untouched_by_the_poison_term(mode):
    """On a valid batch the poison term adds an exact zero: the gradients equal those of the loss terms alone."""
    from yolox_export.static import padded as static_padded

    predictions, targets, max_gt = faulty_batch("none", mode)
    loss_fn = StaticYoloXLoss((8, 16, 32), CLASSES, mode=mode, max_gt=max_gt, validate=False)
    leaves = [p.clone().requires_grad_() for p in predictions]
    grads = torch.autograd.grad(loss_fn(leaves, targets)[0], leaves)
    original = static_padded.poison_gradients
    static_padded.poison_gradients = lambda poison, *tensors: torch.zeros_like(poison)
    try:
        leaves = [p.clone().requires_grad_() for p in predictions]
        want = torch.autograd.grad(loss_fn(leaves, targets)[0], leaves)
    finally:
        static_padded.poison_gradients = original
    for g, w in zip(grads, want):
        assert torch.equal(g, w)


def megvii_call(validate: bool, column: int | None):
    """MegviiLoss.get_losses on decoded outputs [2, A, 5 + C] (a leaf) with a NaN planted at ``column`` of one
    cell (2: box width, 4: objectness, 6: class 1), or none."""
    from yolox_export.grid import flatten_levels, make_grid
    from yolox_export.integrations.megvii import MegviiLoss
    from yolox_export.targets import pad_targets

    scenario = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=CLASSES, seed=0)
    raw = flatten_levels(scenario.predictions)
    shapes = [(8, 8), (4, 4), (2, 2)]
    grid = make_grid(shapes, (8, 16, 32))
    centres = (raw[..., :2] + torch.stack((grid.x_shifts, grid.y_shifts), -1)) * grid.strides.unsqueeze(-1)
    outputs = torch.cat((centres, raw[..., 2:4].exp() * grid.strides.unsqueeze(-1), raw[..., 4:]), -1)
    if column is not None:
        outputs[1, 70, column] = float("nan")
    outputs.requires_grad_()
    gt, mask = pad_targets(scenario.targets, 2)
    labels = gt * mask.unsqueeze(-1)
    sizes = [h * w for h, w in shapes]
    per_level = [[t.reshape(1, -1) for t in values.split(sizes)] for values in (grid.x_shifts, grid.y_shifts,
                                                                                 grid.strides)]
    loss = MegviiLoss(CLASSES, validate=validate).get_losses(None, *per_level, labels, outputs, [])[0]
    return loss, outputs


@pytest.mark.parametrize("column, part", [(2, "decoded box"), (4, "objectness"), (6, "class 1")])
def test_megvii_adapter_raises_on_a_non_finite_output_naming_image_and_cell(column, part):
    with pytest.raises(ValueError, match=f"outputs of image 1, cell 70: non-finite {part}"):
        megvii_call(True, column)


@pytest.mark.parametrize("column", [2, 4, 6])
def test_megvii_adapter_without_validation_poisons_loss_and_gradient(column):
    loss, outputs = megvii_call(False, column)
    assert torch.isnan(loss)
    assert torch.isnan(torch.autograd.grad(loss, outputs)[0]).all()


def test_megvii_adapter_valid_outputs_give_a_finite_loss_and_gradient():
    loss, outputs = megvii_call(True, None)
    assert torch.isfinite(loss) and torch.isfinite(torch.autograd.grad(loss, outputs)[0]).all()


def test_megvii_adapter_pays_for_real_rows_only():
    """Megvii's loader pads labels to 120 rows: the adapter drops the rows beyond the batch's largest real count
    (it reads the rows back anyway); the assignment and loss never depend on padding rows (tests/static/test_sanitise.py)."""
    from yolox_export.integrations.megvii import labels_to_padded

    labels = torch.zeros(2, 120, 5)
    labels[0, :3] = torch.tensor([[1.0, 20, 20, 8, 8], [0, 40, 30, 10, 12], [2, 10, 50, 6, 6]])
    labels[1, :1] = torch.tensor([0.0, 30, 30, 16, 16])
    gt, mask = labels_to_padded(labels, CLASSES)
    assert gt.shape == (2, 3, 5) and mask.tolist() == [[True, True, True], [True, False, False]]
    gt, mask = labels_to_padded(torch.zeros(2, 120, 5), CLASSES)
    assert gt.shape == (2, 1, 5) and not mask.any()  # no target: one masked slot
