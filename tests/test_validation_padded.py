"""Issue #12: the padded entry point's checks (level shapes, real target slots), boolean options, and degenerate
batches (no targets, no images), at every public entry point that takes them.

A real slot (mask True) must hold an integer class id in [0, C), a finite box and w, h > 0; ``forward_padded``
with ``validate=True`` names the image, the slot and the value of the first that does not. Masked slots are never
checked (what they may hold is tests/static/test_sanitise.py's subject).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from yolox_export import FastYoloXLoss, LossConfig, PaddedYoloXLoss, RegularYoloXLoss, StaticYoloXLoss, pad_targets
from yolox_export.config import MODES
from yolox_export.grid import flatten_levels
from yolox_export.integrations.megvii import MegviiLoss
from yolox_export.reference.megvii import MegviiYoloXLoss

from support import for_mode

STRIDES = (8, 16, 32)
NUM_CLASSES = 3
IMAGE = (64, 96)  # grids 8x12, 4x6, 2x3
SHAPES = [(8, 12), (4, 6), (2, 3)]
BATCH = 2


def levels(batch=BATCH, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in STRIDES:
        p = torch.randn((batch, 1, IMAGE[0] // s, IMAGE[1] // s, 5 + NUM_CLASSES), generator=gen)
        p[..., :4] *= 0.3
        out.append(p)
    return out


def targets():
    """Image 0: slot 0; image 1: slots 0 and 1."""
    return torch.tensor([[0, 1, 20.0, 20.0, 16.0, 12.0],
                         [1, 2, 40.0, 30.0, 20.0, 24.0],
                         [1, 0, 70.0, 40.0, 30.0, 20.0]])


def padded(max_gt=3, mode="regular"):
    """raw [2, 126, 8], gt [2, 3, 5], mask [2, 3]: image 0 has slots 1-2 masked, image 1 slot 2; the targets in
    ``mode``'s box format."""
    return (flatten_levels(levels()), *pad_targets(for_mode(targets(), mode), BATCH, max_gt=max_gt))


def static(mode, **kw):
    return StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode, **kw)


# ---------------------------------------------------------------------------------------------------------------
# level shapes of the padded entry point


@pytest.mark.parametrize("mode", MODES)
def test_level_count_differs_from_stride_count(mode):
    raw, gt, mask = padded()
    with pytest.raises(ValueError, match=r"got 2 level shapes for 3 strides \(8, 16, 32\)"):
        static(mode).forward_padded(raw, gt, mask, SHAPES[:2])


@pytest.mark.parametrize("mode", MODES)
def test_level_shapes_that_do_not_cover_one_image(mode):
    # (8, 12), (3, 8), (2, 3): 3 x 8 = 24 cells like (4, 6), so the cell count alone would pass
    raw, gt, mask = padded()
    with pytest.raises(ValueError, match=r"level 1 grid \(3, 8\) at stride 16 covers an image of 48x128; level 0 "
                                         r"covers 64x96$"):
        static(mode).forward_padded(raw, gt, mask, [(8, 12), (3, 8), (2, 3)])


@pytest.mark.parametrize("mode", MODES)
def test_level_shapes_in_the_wrong_stride_order(mode):
    raw, gt, mask = padded()
    with pytest.raises(ValueError, match=r"level 1 grid \(4, 6\) at stride 16 covers an image of 64x96; level 0 covers "
                                         r"16x24; the levels are in the wrong order: their grids fit strides "
                                         r"\(32, 16, 8\), so give the levels in the order of strides \(8, 16, 32\)"):
        static(mode).forward_padded(raw, gt, mask, SHAPES[::-1])


@pytest.mark.parametrize("shape", [(8, 12, 1), (8.0, 12), (0, 12), (True, 12)], ids=str)
def test_level_shape_that_is_not_a_pair_of_positive_ints(shape):
    raw, gt, mask = padded()
    with pytest.raises(ValueError, match=rf"level 0 shape must be a pair of ints \(H, W\) >= 1, got {re.escape(str(shape))}"):
        static("regular").forward_padded(raw, gt, mask, [shape, *SHAPES[1:]])


# ---------------------------------------------------------------------------------------------------------------
# real slots of the padded entry point

BAD_SLOTS = {
    # column, value, expected message tail
    "class-fractional": (0, 1.5, r"has class id 1.5; it must be an integer in \[0, 3\) \(num_classes = 3\)"),
    "class-negative": (0, -1.0, r"has class id -1.0; it must be an integer in \[0, 3\)"),
    "class-equal-C": (0, 3.0, r"has class id 3.0; it must be an integer in \[0, 3\)"),
    "class-huge": (0, 1e9, r"has class id 1000000000.0; it must be an integer in \[0, 3\)"),
    "class-nan": (0, math.nan, r"has class id nan; it must be an integer in \[0, 3\)"),
    "cx-nan": (1, math.nan, r"has non-finite coordinates \[nan, 30.0, 20.0, 24.0\]"),
    "cy-inf": (2, math.inf, r"has non-finite coordinates \[40.0, inf, 20.0, 24.0\]"),
    "w-beyond-float32": (3, 1e39, r"has non-finite coordinates \[40.0, 30.0, 1e\+39, 24.0\]"),
    "w-zero": (3, 0.0, r"has w, h = 0.0, 24.0; both must be > 0"),
    "h-negative": (4, -2.0, r"has w, h = 20.0, -2.0; both must be > 0"),
}
#: The same columns and values in corners (mmdet mode), where image 1 slot 0 is (30, 18, 50, 42).
CORNER_MESSAGES = {
    "cx-nan": r"has non-finite coordinates \[nan, 18.0, 50.0, 42.0\]",
    "cy-inf": r"has non-finite coordinates \[30.0, inf, 50.0, 42.0\]",
    "w-beyond-float32": r"has non-finite coordinates \[30.0, 18.0, 1e\+39, 42.0\]",
    "w-zero": r"has x1, y1, x2, y2 = 30.0, 18.0, 0.0, 42.0; a box needs x2 >= x1 and y2 >= y1",
    "h-negative": r"has x1, y1, x2, y2 = 30.0, 18.0, 50.0, -2.0; a box needs x2 >= x1 and y2 >= y1",
}


@pytest.mark.parametrize("kind", BAD_SLOTS)
@pytest.mark.parametrize("mode", MODES)
def test_bad_real_slot_names_image_slot_and_value(mode, kind):
    column, value, message = BAD_SLOTS[kind]
    if static(mode).config.box_format.name == "xyxy":
        message = CORNER_MESSAGES.get(kind, message)
    raw, gt, mask = padded(mode=mode)
    gt = gt.double()  # float64 so that 1e39 is representable in the input (and not in the float32 graph)
    gt[1, 0, column] = value
    with pytest.raises(ValueError, match=r"targets image 1 slot 0 " + message):
        static(mode).forward_padded(raw, gt, mask, SHAPES)


@pytest.mark.parametrize("mode", MODES)
def test_garbage_in_masked_slots_is_not_validated(mode):
    raw, gt, mask = padded(mode=mode)
    garbage = gt.clone()
    garbage[~mask] = torch.tensor([-1.0, math.nan, math.inf, -5.0, 0.0])
    got = static(mode).forward_padded(raw, garbage, mask, SHAPES)
    want = static(mode).forward_padded(raw, gt, mask, SHAPES)
    assert torch.equal(got.components, want.components)
    assert torch.equal(got.assignment.matched_gt, want.assignment.matched_gt)


@pytest.mark.parametrize("dtype", (torch.int64, torch.int32))
def test_integer_padded_targets_suggest_float(dtype):
    raw, gt, mask = padded()
    with pytest.raises(TypeError, match=rf"targets must be floating point, got {dtype}; convert them with `.float\(\)`"):
        static("regular").forward_padded(raw, gt.to(dtype), mask, SHAPES)


@pytest.mark.parametrize("mode", MODES)
def test_no_slots_at_all_is_an_error_that_says_what_to_do(mode):
    raw, gt, mask = padded()
    with pytest.raises(ValueError, match=r"G >= 1 slots; mark unused slots False in the mask \(pad_targets does\)"):
        static(mode).forward_padded(raw, gt[:, :0], mask[:, :0], SHAPES)


# ---------------------------------------------------------------------------------------------------------------
# boolean options: anything but a bool is a TypeError, in every constructor

NOT_BOOLS = ("False", "True", 0, 1, None, 1.0, torch.tensor(True))
BOOL_CONSTRUCTORS = {
    "LossConfig.use_l1": lambda v: LossConfig(STRIDES, NUM_CLASSES, use_l1=v),
    "LossConfig.obj_loss_fix": lambda v: LossConfig(STRIDES, NUM_CLASSES, mode="fast", obj_loss_fix=v),
    "LossConfig.sync_num_fgs": lambda v: LossConfig(STRIDES, NUM_CLASSES, mode="fast", sync_num_fgs=v),
    "RegularYoloXLoss.use_l1": lambda v: RegularYoloXLoss(STRIDES, NUM_CLASSES, use_l1=v),
    "RegularYoloXLoss.validate": lambda v: RegularYoloXLoss(STRIDES, NUM_CLASSES, validate=v),
    "FastYoloXLoss.use_l1": lambda v: FastYoloXLoss(STRIDES, NUM_CLASSES, use_l1=v),
    "FastYoloXLoss.obj_loss_fix": lambda v: FastYoloXLoss(STRIDES, NUM_CLASSES, obj_loss_fix=v),
    "FastYoloXLoss.sync_num_fgs": lambda v: FastYoloXLoss(STRIDES, NUM_CLASSES, sync_num_fgs=v),
    "FastYoloXLoss.validate": lambda v: FastYoloXLoss(STRIDES, NUM_CLASSES, validate=v),
    "MegviiYoloXLoss.use_l1": lambda v: MegviiYoloXLoss(STRIDES, NUM_CLASSES, use_l1=v),
    "MegviiYoloXLoss.validate": lambda v: MegviiYoloXLoss(STRIDES, NUM_CLASSES, validate=v),
    "MegviiLoss.use_l1": lambda v: MegviiLoss(NUM_CLASSES, STRIDES, use_l1=v),
    "MegviiLoss.validate": lambda v: MegviiLoss(NUM_CLASSES, STRIDES, validate=v),
    **{f"StaticYoloXLoss[{m}].{name}": (lambda m, name: lambda v: static(m, **{name: v}))(m, name)
       for m in MODES for name in ("use_l1", "obj_loss_fix", "sync_num_fgs", "validate")},
    "PaddedYoloXLoss.with_targets": lambda v: PaddedYoloXLoss(LossConfig(STRIDES, NUM_CLASSES), SHAPES, with_targets=v),
    "pad_targets.validate": lambda v: pad_targets(targets(), BATCH, validate=v),
}


@pytest.mark.parametrize("value", NOT_BOOLS, ids=repr)
@pytest.mark.parametrize("where", BOOL_CONSTRUCTORS)
def test_boolean_option_that_is_not_a_bool(where, value):
    name = where.split(".")[-1]
    with pytest.raises(TypeError, match=rf"{name} must be a bool \(True or False\), got {re.escape(repr(value))}"):
        BOOL_CONSTRUCTORS[where](value)


@pytest.mark.parametrize("where", BOOL_CONSTRUCTORS)
def test_boolean_option_accepts_true_and_false(where):
    for value in (True, False):
        BOOL_CONSTRUCTORS[where](value)


def test_use_l1_string_false_no_longer_switches_the_l1_term_on():
    with pytest.raises(TypeError, match="use_l1 must be a bool"):
        StaticYoloXLoss(STRIDES, NUM_CLASSES, use_l1="False")


def test_ort_runner_validate_must_be_a_bool(tmp_path):
    from yolox_export.export.ort_runtime import OrtRunner

    with pytest.raises(TypeError, match=r"validate must be a bool \(True or False\), got 'no'"):
        OrtRunner(tmp_path / "missing.onnx", validate="no")


# ---------------------------------------------------------------------------------------------------------------
# degenerate batches

REFERENCES = {"regular": RegularYoloXLoss, "fast": FastYoloXLoss}
# (loss, components) of a batch with nothing to match: every loss term 0, num_fg / num_gts = max(0, 1) / max(0, 1)
NOTHING = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_end_to_end_through_pad_targets(mode):
    # pad_targets gives G = 1 masked slot; the graph's loss is then the objectness of background cells alone
    raw = flatten_levels(levels())
    gt, mask = pad_targets(torch.zeros(0, 6), BATCH)
    assert gt.shape == (BATCH, 1, 5) and not mask.any()
    out = static(mode).forward_padded(raw, gt, mask, SHAPES)
    assert not out.assignment.fg_mask.any() and (out.assignment.matched_gt == -1).all()
    loss, components = static(mode)(levels(), torch.zeros(0, 6))
    torch.testing.assert_close(out.loss, loss, rtol=0, atol=0)
    graph = PaddedYoloXLoss(LossConfig(STRIDES, NUM_CLASSES, mode=mode), SHAPES)(raw, gt, mask)
    _, sync_free = static(mode, max_gt=1, validate=False)(levels(), torch.zeros(0, 6))
    torch.testing.assert_close(graph[3], sync_free, rtol=0, atol=0)  # the same static-buffer arithmetic
    # the validating module computes the loss with the references' matched_loss (one sum over [B, A]), the graph
    # axis by axis: the same float32 terms, summed in another order (B * A = 60 terms here)
    torch.testing.assert_close(graph[3], components, rtol=1e-6, atol=0)
    if mode in REFERENCES:
        want, _ = REFERENCES[mode](STRIDES, NUM_CLASSES)(levels(), torch.zeros(0, 6))
        torch.testing.assert_close(loss, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("obj_loss_fix", (False, True))
@pytest.mark.parametrize("mode", MODES)
def test_a_batch_of_no_images_has_a_defined_result(mode, obj_loss_fix):
    fix = {"obj_loss_fix": obj_loss_fix} if mode == "fast" else {}
    empty = levels(batch=0)
    modules = [static(mode, **fix)] + ([REFERENCES[mode](STRIDES, NUM_CLASSES, **fix)] if mode in REFERENCES else [])
    for module in modules:
        leaves = [p.requires_grad_(True) for p in levels(batch=0)]
        loss, components = module(leaves, torch.zeros(0, 6))
        loss.backward()
        assert components.tolist() == NOTHING, type(module).__name__
        assert all(p.grad.shape == p.shape for p in leaves)
        assignment = module.assign(empty, torch.zeros(0, 6))
        assert assignment.fg_mask.shape == (0, 126) and assignment.matched_gt.shape == (0, 126)
    raw, (gt, mask) = flatten_levels(empty), pad_targets(torch.zeros(0, 6), 0)
    out = PaddedYoloXLoss(LossConfig(STRIDES, NUM_CLASSES, mode=mode, **fix), SHAPES)(raw, gt, mask)
    assert out[3].tolist() == NOTHING and out[0].shape == (0, 126)
