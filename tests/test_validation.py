"""Issue #7: every bad input gets a clear error at every public entry point, nothing silent.

Each case runs against every entry point that takes the input: the two eager references and the static module
(``forward`` and ``assign``), and ``pad_targets`` for target cases. Each asserts the exception type and that the
message names the level / shape / count / row / value. Inside the padded graph (nothing validated), non-finite
predictions must never be assigned and must turn the loss into NaN.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import yolox_export.config as config_module
import yolox_export.reference.common as reference_common
import yolox_export.static.loss as static_loss
import yolox_export.targets as targets_module
from yolox_export import (FastYoloXLoss, LossConfig, MegviiYoloXLoss, PaddedYoloXLoss, RegularYoloXLoss, StaticYoloXLoss,
                          pad_targets)
from yolox_export.grid import flatten_levels, level_shapes

from support import for_mode

MODES = config_module.MODES
STRIDES = (8, 16, 32)
NUM_CLASSES = 3
IMAGE = (64, 96)  # grids 8x12, 4x6, 2x3
BATCH = 2


def levels(batch=BATCH, image=IMAGE, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in STRIDES:
        p = torch.randn((batch, 1, image[0] // s, image[1] // s, 5 + NUM_CLASSES), generator=gen)
        p[..., :4] *= 0.3
        out.append(p.to(dtype))
    return out


def targets():
    """Three valid rows; tests corrupt row 1."""
    return torch.tensor([[0, 1, 20.0, 20.0, 16.0, 12.0],
                         [1, 2, 40.0, 30.0, 20.0, 24.0],
                         [1, 0, 70.0, 40.0, 30.0, 20.0]])


def corrupt(column, value, row=1):
    t = targets()
    t[row, column] = value
    return t


MODULES = {
    "regular": lambda **kw: RegularYoloXLoss(STRIDES, NUM_CLASSES, **kw),
    "fast": lambda **kw: FastYoloXLoss(STRIDES, NUM_CLASSES, **kw),
    "megvii": lambda **kw: MegviiYoloXLoss(STRIDES, NUM_CLASSES, **kw),
    **{f"static-{m}": (lambda m: lambda **kw: StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=m, **kw))(m) for m in MODES},
}
ENTRY_POINTS = [f"{m}.{call}" for m in MODULES for call in ("forward", "assign")]


def call(entry, predictions, t, **kw):
    """``entry`` on targets ``t`` written as (cx, cy, w, h), given in the module's box format (``for_mode``)."""
    module_name, method = entry.split(".")
    module = MODULES[module_name](**kw)
    if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 2 and t.shape[1] == 6:
        t = for_mode(t, module.config.mode)
    return module(predictions, t) if method == "forward" else module.assign(predictions, t)


def mode_of(entry):
    """The assignment mode of an entry point ("pad_targets" reads (cx, cy, w, h) rows: regular's format)."""
    return "regular" if entry == "pad_targets" else MODULES[entry.split(".")[0]]().config.mode


# ---------------------------------------------------------------------------------------------------------------
# predictions


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_level_count_differs_from_stride_count(entry):
    with pytest.raises(ValueError, match=r"got 2 prediction levels for 3 strides \(8, 16, 32\)"):
        call(entry, levels()[:2], targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_level_grid_does_not_match_the_image_size(entry):
    p = levels()
    p[1] = p[1][:, :, :3]  # 3x6 at stride 16 covers 48x96, not 64x96
    with pytest.raises(ValueError, match=r"prediction level 1 grid \(3, 6\) at stride 16 covers an image of 48x96; "
                                         r"level 0 covers 64x96"):
        call(entry, p, targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_levels_in_the_wrong_order_are_a_grid_mismatch(entry):
    with pytest.raises(ValueError, match=r"prediction level 1 grid \(4, 6\) at stride 16 covers an image of 64x96; "
                                         r"level 0 covers 16x24; the levels are in the wrong order: their grids fit "
                                         r"strides \(32, 16, 8\), so give the levels in the order of strides "
                                         r"\(8, 16, 32\)"):
        call(entry, levels()[::-1], targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_grid_mismatch_that_no_order_fixes_gets_no_order_hint(entry):
    p = levels()
    p[1] = p[1][:, :, :3]
    with pytest.raises(ValueError, match=r"level 0 covers 64x96$"):
        call(entry, p, targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_level_batch_differs(entry):
    p = levels()
    p[2] = p[2][:1]
    with pytest.raises(ValueError, match=r"prediction level 2 has batch 1; level 0 has 2"):
        call(entry, p, targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_last_dimension_is_not_5_plus_num_classes(entry):
    p = levels()
    p[2] = p[2][..., :-1]
    with pytest.raises(ValueError, match=r"prediction level 2 has last dimension 7; expected 5 \+ num_classes = 8"):
        call(entry, p, targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_level_of_the_wrong_rank(entry):
    p = levels()
    p[0] = p[0][:, 0]
    with pytest.raises(ValueError, match=r"prediction level 0 has shape \(2, 8, 12, 8\); expected \[B, 1, H, W, 5 \+ C\]"):
        call(entry, p, targets())


@pytest.mark.parametrize("value", (math.nan, math.inf, -math.inf), ids=("nan", "inf", "-inf"))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_non_finite_prediction(entry, value):
    p = levels()
    p[2][1, 0, 1, 2, 6] = value
    with pytest.raises(ValueError, match=rf"prediction level 2 has a non-finite value {value} at index \(1, 0, 1, 2, 6\)"):
        call(entry, p, targets())


@pytest.mark.parametrize("dtype", (torch.int64, torch.int32, torch.bool))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_integer_predictions(entry, dtype):
    p = levels()
    p[1] = p[1].to(dtype)
    with pytest.raises(TypeError, match=rf"prediction level 1 has dtype {dtype}; a floating dtype is required"):
        call(entry, p, targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_predictions_that_are_not_a_list_of_levels(entry):
    with pytest.raises(TypeError, match=r"list of per-level tensors.*got Tensor"):
        call(entry, flatten_levels(levels()), targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_level_that_is_not_a_tensor(entry):
    p = levels()
    p[1] = p[1].numpy()
    with pytest.raises(TypeError, match=r"prediction level 1 is a ndarray, not a tensor"):
        call(entry, p, targets())


# ---------------------------------------------------------------------------------------------------------------
# targets: every case at the four loss modules' entry points and at pad_targets

TARGET_ENTRY_POINTS = ENTRY_POINTS + ["pad_targets"]


def call_with_targets(entry, t, **kw):
    if entry == "pad_targets":
        return pad_targets(t, BATCH, **kw)
    return call(entry, levels(), t, **kw)


@pytest.mark.parametrize("shape", ((3, 5), (6,), (2, 6, 1), (0, 5)))
@pytest.mark.parametrize("entry", TARGET_ENTRY_POINTS)
def test_targets_not_n_by_6(entry, shape):
    with pytest.raises(ValueError, match=rf"targets must be \[N, 6\].*got shape {re.escape(str(tuple(shape)))}"):
        call_with_targets(entry, torch.zeros(shape))


@pytest.mark.parametrize("entry", TARGET_ENTRY_POINTS)
def test_targets_not_a_tensor(entry):
    with pytest.raises(TypeError, match=r"targets must be a tensor \[N, 6\], got ndarray"):
        call_with_targets(entry, targets().numpy())


@pytest.mark.parametrize("value", (0.5, -1.0, float(BATCH), 7.0, math.nan, math.inf),
                         ids=("fractional", "negative", "equal-B", "above-B", "nan", "inf"))
@pytest.mark.parametrize("entry", TARGET_ENTRY_POINTS)
def test_bad_image_index(entry, value):
    with pytest.raises(ValueError, match=rf"targets row 1 has image index {value}; it must be an integer in \[0, 2\) "
                                         r"\(batch size = 2\)"):
        call_with_targets(entry, corrupt(0, value))


@pytest.mark.parametrize("value", (1.5, -1.0, float(NUM_CLASSES), 80.0, math.nan),
                         ids=("fractional", "negative", "equal-C", "above-C", "nan"))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_bad_class_id(entry, value):
    with pytest.raises(ValueError, match=rf"targets row 1 has class id {value}; it must be an integer in \[0, 3\) "
                                         r"\(num_classes = 3\)"):
        call_with_targets(entry, corrupt(1, value))


@pytest.mark.parametrize("value", (1.5, -1.0, math.nan), ids=("fractional", "negative", "nan"))
def test_pad_targets_rejects_class_ids_that_are_no_class_whatever_num_classes(value):
    # pad_targets does not know num_classes, but a fractional, negative or NaN class id is wrong for any
    with pytest.raises(ValueError, match=rf"targets row 1 has class id {value}; it must be an integer >= 0"):
        pad_targets(corrupt(1, value), BATCH)


def test_pad_targets_accepts_any_non_negative_integer_class_id():
    gt, _ = pad_targets(corrupt(1, 1000.0), BATCH)
    assert gt[1, 0, 0] == 1000.0


@pytest.mark.parametrize("value", (math.nan, math.inf, -math.inf), ids=("nan", "inf", "-inf"))
@pytest.mark.parametrize("column", (2, 3, 4, 5), ids=("cx", "cy", "w", "h"))
@pytest.mark.parametrize("entry", TARGET_ENTRY_POINTS)
def test_non_finite_coordinates(entry, column, value):
    t = corrupt(column, value)
    coords = re.escape(str(for_mode(t, mode_of(entry))[1, 2:].double().tolist()))
    with pytest.raises(ValueError, match=rf"targets row 1 has non-finite coordinates {coords}"):
        call_with_targets(entry, t)


CENTRE_SIZE_ENTRY_POINTS = [e for e in TARGET_ENTRY_POINTS if LossConfig(STRIDES, 1, mode=mode_of(e)).box_format.name
                            == "cxcywh"]
CORNER_ENTRY_POINTS = [e for e in TARGET_ENTRY_POINTS if e not in CENTRE_SIZE_ENTRY_POINTS]


@pytest.mark.parametrize("w,h", ((0.0, 24.0), (20.0, 0.0), (-3.0, 24.0), (20.0, -0.5), (-0.0, 24.0)))
@pytest.mark.parametrize("entry", CENTRE_SIZE_ENTRY_POINTS)
def test_non_positive_width_or_height(entry, w, h):
    t = corrupt(4, w)
    t[1, 5] = h
    with pytest.raises(ValueError, match=rf"targets row 1 has w, h = {w}, {h}; both must be > 0"):
        call_with_targets(entry, t)


@pytest.mark.parametrize("x2,y2", ((15.0, 26.0), (40.0, 13.5), (-1.0, -1.0)))
@pytest.mark.parametrize("entry", CORNER_ENTRY_POINTS)
def test_corners_with_x2_below_x1_or_y2_below_y1(entry, x2, y2):
    # row 1 as corners is (30, 18, 50, 42): x2 = 15 < 30, y2 = 13.5 < 18, or both
    t = for_mode(targets(), mode_of(entry))
    t[1, 4], t[1, 5] = x2, y2
    module_name, method = entry.split(".")
    module = MODULES[module_name]()
    with pytest.raises(ValueError, match=rf"targets row 1 has x1, y1, x2, y2 = 30.0, 18.0, {x2}, {y2}; a box needs "
                                         r"x2 >= x1 and y2 >= y1"):
        module(levels(), t) if method == "forward" else module.assign(levels(), t)


@pytest.mark.parametrize("entry", CORNER_ENTRY_POINTS)
def test_an_empty_corner_box_is_valid(entry):
    # mmdetection computes a zero-width box without complaint: x2 == x1 (and y2 == y1) is a box of no area
    t = for_mode(targets(), mode_of(entry))
    t[1, 4], t[1, 5] = t[1, 2], t[1, 3]
    module_name, method = entry.split(".")
    module = MODULES[module_name]()
    out = module(levels(), t) if method == "forward" else module.assign(levels(), t)
    assert torch.isfinite(out[0]).all() if method == "forward" else out.fg_mask.any()


@pytest.mark.parametrize("dtype", (torch.int64, torch.int32, torch.bool))
@pytest.mark.parametrize("entry", TARGET_ENTRY_POINTS)
def test_integer_targets(entry, dtype):
    with pytest.raises(TypeError, match=rf"targets must be floating point, got {dtype}; convert them with `.float\(\)`"):
        call_with_targets(entry, targets().to(dtype))


@pytest.mark.parametrize("dtype", (torch.float64, torch.float16, torch.bfloat16))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_other_float_target_dtypes_are_accepted_and_give_the_same_assignment(entry, dtype):
    # integer-valued pixel boxes are exact in every float dtype, so the assignment must not change
    if entry.endswith(".forward"):
        loss, components = call(entry, levels(), targets().to(dtype))
        assert torch.isfinite(loss) and torch.isfinite(components).all()
        return
    got, want = call(entry, levels(), targets().to(dtype)), call(entry, levels(), targets())
    assert torch.equal(got.fg_mask, want.fg_mask) and torch.equal(got.matched_gt, want.matched_gt)


# ---------------------------------------------------------------------------------------------------------------
# a fixed max_gt


def crowded_image_1():
    """Image 0: 1 target, image 1: 3 targets."""
    return torch.cat((targets(), torch.tensor([[1, 1, 50.0, 50.0, 10.0, 10.0]])))


@pytest.mark.parametrize("method", ("forward", "assign"))
@pytest.mark.parametrize("mode", MODES)
def test_more_targets_than_max_gt_static(mode, method):
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode, max_gt=2)
    crowded = for_mode(crowded_image_1(), mode)
    with pytest.raises(ValueError, match=r"image 1 has 3 targets, more than max_gt = 2"):
        module(levels(), crowded) if method == "forward" else module.assign(levels(), crowded)


@pytest.mark.parametrize("mode", MODES)
def test_more_targets_than_max_gt_unvalidated_static_says_nan(mode):
    # validate=False reads nothing back: image 1's last slot (1) becomes a NaN real slot, never assigned, loss NaN
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode, max_gt=2, validate=False)
    loss, components = module(levels(), crowded_image_1())
    assert math.isnan(float(loss)) and components.isnan().any()
    assert not (module.assign(levels(), crowded_image_1()).matched_gt[1] == 1).any()


def test_more_targets_than_max_gt_pad_targets():
    with pytest.raises(ValueError, match=r"image 1 has 3 targets, more than max_gt = 2"):
        pad_targets(crowded_image_1(), BATCH, max_gt=2)


def test_exactly_max_gt_targets_are_fine():
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, max_gt=3)
    loss, _ = module(levels(), crowded_image_1())
    assert torch.isfinite(loss)
    gt, mask = pad_targets(crowded_image_1(), BATCH, max_gt=3)
    assert gt.shape == (2, 3, 5) and mask.sum(1).tolist() == [1, 3]


# ---------------------------------------------------------------------------------------------------------------
# devices: the meta device stands in for a second device on a CPU-only machine


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_targets_on_another_device_than_predictions(entry):
    with pytest.raises(ValueError, match=r"targets are on meta but predictions are on cpu"):
        call(entry, levels(), targets().to("meta"))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_predictions_on_another_device_than_targets(entry):
    with pytest.raises(ValueError, match=r"targets are on cpu but predictions are on meta"):
        call(entry, [p.to("meta") for p in levels()], targets())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_levels_on_different_devices(entry):
    p = levels()
    p[1] = p[1].to("meta")
    with pytest.raises(ValueError, match=r"prediction level 1 is on meta; level 0 is on cpu"):
        call(entry, p, targets())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_cuda_predictions_with_cpu_targets(entry):
    with pytest.raises(ValueError, match=r"targets are on cpu but predictions are on cuda:0"):
        call(entry, [p.cuda() for p in levels()], targets())


# ---------------------------------------------------------------------------------------------------------------
# low precision predictions


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
@pytest.mark.parametrize("mode", MODES)
def test_low_precision_static_gives_the_float32_cast_assignment(mode, dtype):
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode)
    low, rows = levels(dtype=dtype), for_mode(targets(), mode)
    want = module.assign([p.float() for p in low], rows)
    got = module.assign(low, rows)
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert got.matched_iou.dtype == torch.float32
    loss, components = module(low, rows)
    assert loss.dtype == torch.float32 and torch.isfinite(components).all()
    padded = module.forward_padded(flatten_levels(low), *pad_targets(rows, BATCH), level_shapes(low))
    assert torch.equal(padded.assignment.fg_mask, want.fg_mask)
    assert torch.equal(padded.assignment.matched_gt, want.matched_gt)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
@pytest.mark.parametrize("reference", ("regular", "fast", "megvii"))
def test_low_precision_references_work_in_float32(reference, dtype):
    # the references decode boxes in the prediction dtype (as the originals do), so their IoUs carry its rounding;
    # on this clear-cut batch the selection is the float32 cast's
    module = MODULES[reference]()
    low = levels(dtype=dtype)
    want = module.assign([p.float() for p in low], targets())
    got = module.assign(low, targets())
    assert got.matched_iou.dtype == torch.float32
    assert torch.equal(got.fg_mask, want.fg_mask) and torch.equal(got.matched_gt, want.matched_gt)
    torch.testing.assert_close(got.matched_iou, want.matched_iou, rtol=0, atol=1e-2)
    loss, components = module([p.requires_grad_(True) for p in low], targets())
    assert torch.isfinite(loss) and torch.isfinite(components).all()


# ---------------------------------------------------------------------------------------------------------------
# validate=False: the checks are skipped (proved by spies, not by what bad input happens to do downstream)


@pytest.fixture
def spies(monkeypatch):
    """Replace every validation function the entry points call with a recorder that then does the real check."""
    calls = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return wrapper

    for module in (reference_common, static_loss, targets_module):
        for name in ("check_predictions", "check_targets", "check_padded"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, spy(f"{module.__name__}.{name}", getattr(module, name)))
    return calls


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_validate_true_runs_the_checks(entry, spies):
    with pytest.raises(ValueError, match="class id 3.0"):
        call(entry, levels(), corrupt(1, float(NUM_CLASSES)), validate=True)
    assert spies


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_validate_false_skips_the_class_id_check(entry, spies):
    # class id == num_classes: our check would name it; with validate=False it is not run. What the unchecked id then
    # does downstream (an index error, a wrong row) is not ours to promise, so any outcome but our error is accepted.
    try:
        call(entry, levels(), corrupt(1, float(NUM_CLASSES)), validate=False)
    except Exception as error:  # noqa: BLE001
        assert "targets row" not in str(error)
    assert spies == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_validate_false_gives_the_same_result_on_valid_input(entry, spies):
    checked, unchecked = call(entry, levels(), targets()), call(entry, levels(), targets(), validate=False)
    assert spies and all("check_" in c for c in spies)
    spies.clear()
    call(entry, levels(), targets(), validate=False)
    assert spies == []
    if entry.endswith(".assign"):
        assert torch.equal(checked.fg_mask, unchecked.fg_mask) and torch.equal(checked.matched_gt, unchecked.matched_gt)
    else:
        assert torch.equal(checked[1], unchecked[1])


def test_pad_targets_validate_false_passes_rows_through(spies):
    t = corrupt(4, -5.0)  # w <= 0: rejected when validating
    with pytest.raises(ValueError, match="row 1 has w, h = -5.0, 24.0"):
        pad_targets(t, BATCH)
    spies.clear()
    gt, mask = pad_targets(t, BATCH, validate=False)
    assert spies == []
    assert gt[1, 0].tolist() == [2.0, 40.0, 30.0, -5.0, 24.0] and mask.tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("mode", MODES)
def test_forward_padded_validate_false_skips_the_shape_check(mode, spies):
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode, validate=False)
    p = levels()
    module.forward_padded(flatten_levels(p), *pad_targets(targets(), BATCH), level_shapes(p))
    assert not any(c.endswith("check_padded") for c in spies)
    with pytest.raises(ValueError, match=r"target_mask must be bool \(2, 2\), got torch.float32"):
        gt, mask = pad_targets(targets(), BATCH)
        StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode).forward_padded(flatten_levels(p), gt, mask.float(), level_shapes(p))


# ---------------------------------------------------------------------------------------------------------------
# inside the padded graph nothing is validated: a non-finite cell is never assigned and the loss says NaN


def single_cell(mode):
    """One 32x32 image, one stride-32 cell, one target on it: with finite predictions the cell must be assigned."""
    raw = torch.zeros((1, 1, 5 + 2))
    raw[..., 4:] = -4.6
    gt = torch.tensor([[[1.0, 16.0, 16.0, 20.0, 20.0]]])
    mask = torch.ones((1, 1), dtype=torch.bool)
    return raw, gt, mask


GRAPH_RUNNERS = ("forward_padded", "PaddedYoloXLoss")


def run_graph(runner, mode, raw, gt, mask):
    """(fg_mask, matched_gt, matched_iou, components, loss) from the unvalidated padded path."""
    if runner == "forward_padded":
        out = StaticYoloXLoss((32,), 2, mode=mode, use_l1=True, validate=False).forward_padded(raw, gt, mask, [(1, 1)])
        a = out.assignment
        return a.fg_mask, a.matched_gt, a.matched_iou, out.components, out.loss
    module = PaddedYoloXLoss(LossConfig((32,), 2, mode=mode, use_l1=True), [(1, 1)])
    fg, matched, iou, components = module(raw, gt, mask)[:4]  # then image_loss and the audit outputs
    return fg, matched, iou, components, components[5]


CHANNELS = {"x": 0, "log_w": 2, "obj": 4, "cls": 6}
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

@pytest.mark.parametrize("value", NON_FINITE, ids=list(NON_FINITE))
@pytest.mark.parametrize("channel", CHANNELS, ids=list(CHANNELS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", GRAPH_RUNNERS)
def test_non_finite_cell_is_never_assigned(runner, mode, channel, value):
    raw, gt, mask = single_cell(mode)
    fg, *_ = run_graph(runner, mode, raw, gt, mask)
    assert fg.tolist() == [[True]]  # the cell is the target's only candidate
    raw[0, 0, CHANNELS[channel]] = NON_FINITE[value]
    fg, matched, iou, _, _ = run_graph(runner, mode, raw, gt, mask)
    assert fg.tolist() == [[False]] and matched.tolist() == [[-1]] and iou.tolist() == [[0.0]]


@pytest.mark.parametrize("value", NON_FINITE, ids=list(NON_FINITE))
@pytest.mark.parametrize("channel", CHANNELS, ids=list(CHANNELS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runner", GRAPH_RUNNERS)
def test_non_finite_prediction_makes_the_loss_nan(runner, mode, channel, value):
    # two cells: cell 1 is the target's and stays finite; cell 0 gets the non-finite value
    raw = torch.zeros((1, 2, 5 + 2))
    raw[..., 4:] = -4.6
    gt = torch.tensor([[[1.0, 48.0, 16.0, 20.0, 20.0]]])
    mask = torch.ones((1, 1), dtype=torch.bool)
    raw[0, 0, CHANNELS[channel]] = NON_FINITE[value]
    if runner == "forward_padded":
        out = StaticYoloXLoss((32,), 2, mode=mode, validate=False).forward_padded(raw, gt, mask, [(1, 2)])
        loss, components = out.loss, out.components
    else:
        components = PaddedYoloXLoss(LossConfig((32,), 2, mode=mode), [(1, 2)])(raw, gt, mask)[3]
        loss = components[5]
    assert math.isnan(float(loss)) and math.isnan(float(components[5])), components.tolist()
