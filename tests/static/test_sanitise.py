"""Issue #12 items 1-2: the padded target contract of the static graph (``yolox_export.static.sanitise``).

* Masked slots never matter, whatever they hold: assignment, loss, components, gradients and training targets are
  bit for bit those of zero padding, in every mode, eager (``forward_padded``, ``PaddedYoloXLoss``) and exported
  under onnxruntime. Hypothesis draws the masks (real slots anywhere, images without any) and the garbage.
* A malformed real slot (non-finite box, w or h <= 0, class not an integer in [0, C)) inside the graph, where
  nothing is validated: never assigned, the loss NaN.

Derandomized like tests/static/test_properties.py; ``PADDING_EXAMPLES`` eager and ``ORT_PADDING_EXAMPLES`` onnxruntime
examples per mode. The eager tests run on their own two-level grid; the onnxruntime tests on the graph the
onnxruntime tests share (conftest's ``shared_export``: three levels, with targets and L1), exported once a session.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from yolox_export import LossConfig, PaddedYoloXLoss, StaticYoloXLoss
from yolox_export.config import MODES
from yolox_export.static.sanitise import sanitise_slots, well_formed

from support import SHARED_CELLS, SHARED_CLASSES, SHARED_IMAGE, SHARED_SHAPES, SHARED_STRIDES, for_mode

STRIDES = (8, 16)
IMAGE = (32, 48)  # grids 4x6 and 2x3: 30 cells
SHAPES = [(IMAGE[0] // s, IMAGE[1] // s) for s in STRIDES]
CELLS = sum(h * w for h, w in SHAPES)
NUM_CLASSES = 3
# the onnxruntime tests' grid and classes: the shared graph's (grids 16x20, 8x10 and 4x5: 420 cells; 6 classes)
ORT_STRIDES, ORT_IMAGE, ORT_SHAPES = SHARED_STRIDES, SHARED_IMAGE, SHARED_SHAPES
ORT_CELLS, ORT_CLASSES = SHARED_CELLS, SHARED_CLASSES
PADDING_EXAMPLES = 60
ORT_PADDING_EXAMPLES = 20

PROFILE = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GARBAGE = (math.nan, math.inf, -math.inf, -1.0, 0.0, -0.0, -5.0, 1.5, 3.0, 1e9, -1e9, 1e30, -1e30, 3e38, 0.5)
OUTPUT_NAMES = ("fg_mask", "matched_gt", "matched_iou", "loss_components", "image_loss", "cls_target", "obj_target",
                "reg_target", "l1_target", "target_k", "target_cells")


# ---------------------------------------------------------------------------------------------------------------
# hand-worked


def test_well_formed_rows():
    gt = torch.tensor([[[0.0, 10.0, 10.0, 4.0, 4.0],  # fine
                        [2.0, -1e30, 1e30, 1.0, 1e-3],  # fine: huge but finite, tiny but positive
                        [3.0, 10.0, 10.0, 4.0, 4.0],  # class == C
                        [1.5, 10.0, 10.0, 4.0, 4.0],  # fractional class
                        [-1.0, 10.0, 10.0, 4.0, 4.0],  # negative class
                        [math.nan, 10.0, 10.0, 4.0, 4.0],  # NaN class
                        [0.0, math.inf, 10.0, 4.0, 4.0],  # infinite centre
                        [0.0, 10.0, 10.0, 0.0, 4.0],  # w == 0
                        [0.0, 10.0, 10.0, 4.0, -1.0]]])  # h < 0
    assert well_formed(gt, NUM_CLASSES).tolist() == [[True, True] + [False] * 7]


def test_sanitise_slots_replaces_masked_and_malformed_rows_by_the_zero_row():
    gt = torch.tensor([[[1.0, 10.0, 12.0, 4.0, 6.0], [math.nan, math.inf, -1.0, -2.0, 0.0]],
                       [[-1.0, 5.0, 5.0, 2.0, 2.0], [2.0, 20.0, 22.0, 8.0, 9.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    slots = sanitise_slots(gt, mask, NUM_CLASSES)
    # image 0 slot 1 is masked garbage -> zero row, no poison; image 1 slot 0 is real with class -1 -> zero row,
    # out of the mask, poison NaN
    assert slots.mask.tolist() == [[True, False], [False, True]]
    assert torch.equal(slots.gt, torch.tensor([[[1.0, 10.0, 12.0, 4.0, 6.0], [0.0] * 5],
                                               [[0.0] * 5, [2.0, 20.0, 22.0, 8.0, 9.0]]]))
    assert slots.gt[..., 0].tolist() == [[1, 0], [0, 2]]
    assert math.isnan(float(slots.poison))
    assert float(sanitise_slots(gt, torch.tensor([[True, False], [False, True]]), NUM_CLASSES).poison) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# strategies


@st.composite
def padded_cases(draw, image=IMAGE, cells=CELLS, num_classes=NUM_CLASSES):
    """(raw [B, A, 5 + C], zero-padded gt [B, G, 5], mask [B, G], the same gt with garbage in every masked slot)."""
    batch, slots = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=batch * slots, max_size=batch * slots))).reshape(batch, slots)
    gt = torch.zeros((batch, slots, 5))
    for b, g in mask.nonzero().tolist():
        gt[b, g] = torch.tensor([float(draw(st.integers(0, num_classes - 1))),
                                 draw(st.floats(-8, image[1] + 8)), draw(st.floats(-8, image[0] + 8)),
                                 draw(st.floats(1, 40)), draw(st.floats(1, 40))])
    garbage = gt.clone()
    real = gt[mask]
    for b, g in (~mask).nonzero().tolist():
        if real.shape[0] and draw(st.integers(0, 4)) == 0:  # a copy of a real target
            garbage[b, g] = real[draw(st.integers(0, real.shape[0] - 1))]
        else:
            garbage[b, g] = torch.tensor([draw(st.sampled_from(GARBAGE)) for _ in range(5)])
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    raw = torch.randn((batch, cells, 5 + num_classes), generator=gen)
    raw[..., :4] *= 0.5
    raw[..., 4:] = raw[..., 4:] * 2.0 - 3.0
    return raw, gt, mask, garbage


def describe(gt, mask, garbage):
    return f"mask={mask.tolist()} gt={gt.tolist()} garbage={garbage.tolist()}"


# ---------------------------------------------------------------------------------------------------------------
# eager


def eager_outputs(mode, raw, gt, mask):
    """forward_padded's outputs with gradients, and PaddedYoloXLoss's, as {name: tensor}."""
    leaf = raw.clone().requires_grad_(True)
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode, use_l1=True, validate=False)
    out = module.forward_padded(leaf, gt, mask, SHAPES, with_targets=True)
    out.loss.backward()
    a = out.assignment
    found = {"fg_mask": a.fg_mask, "matched_gt": a.matched_gt, "matched_iou": a.matched_iou, "loss": out.loss.detach(),
             "components": out.components, "image_loss": out.image_loss.detach(), "grad": leaf.grad,
             "cls_target": out.cls_target,
             "obj_target": out.obj_target, "reg_target": out.reg_target, "l1_target": out.l1_target}
    graph = PaddedYoloXLoss(LossConfig(STRIDES, NUM_CLASSES, mode=mode, use_l1=True), SHAPES, with_targets=True)
    found.update({f"graph.{name}": value for name, value in zip(OUTPUT_NAMES, graph(raw, gt, mask))})
    return found


@pytest.mark.parametrize("mode", MODES)
@settings(PROFILE, max_examples=PADDING_EXAMPLES)
@given(case=padded_cases())
def test_masked_garbage_is_zero_padding_eager(mode, case):
    raw, gt, mask, garbage = case
    gt, garbage = for_mode(gt, mode), for_mode(garbage, mode)
    note(describe(gt, mask, garbage))
    want, got = eager_outputs(mode, raw, gt, mask), eager_outputs(mode, raw, garbage, mask)
    assert torch.isfinite(want["loss"]) and torch.isfinite(want["grad"]).all()
    for name, value in want.items():
        assert torch.equal(got[name], value), name


@pytest.mark.parametrize("mode", MODES)
def test_nan_in_masked_slot_of_an_image_without_targets(mode):
    # the case: image 1 has no target, its only slot is masked NaN; background gradients stay finite
    raw = torch.randn((2, CELLS, 5 + NUM_CLASSES), generator=torch.Generator().manual_seed(1))
    gt = for_mode(torch.tensor([[[1.0, 20.0, 12.0, 10.0, 8.0]], [[math.nan] * 5]]), mode)
    mask = torch.tensor([[True], [False]])
    got = eager_outputs(mode, raw, gt, mask)
    want = eager_outputs(mode, raw, torch.where(mask.unsqueeze(-1), gt, 0.0), mask)
    assert torch.isfinite(got["grad"]).all() and torch.isfinite(got["cls_target"]).all()
    assert all(torch.equal(got[name], value) for name, value in want.items())


# ---------------------------------------------------------------------------------------------------------------
# a malformed real slot inside the graph

def malformed(num_classes):
    """{kind: (column, value)} of a slot row. In corners (mmdet mode) the one-target case's box is (13, 7, 27, 17),
    so the two extent kinds put x2 below x1 and y2 below y1 there."""
    return {
        "class-negative": (0, -1.0), "class-fractional": (0, 1.5), "class-equal-C": (0, float(num_classes)),
        "class-huge": (0, 1e9), "class-nan": (0, math.nan), "cx-nan": (1, math.nan), "cy-inf": (2, -math.inf),
        "w-zero": (3, 0.0), "h-negative": (4, -4.0),
    }


MALFORMED = malformed(NUM_CLASSES)


def one_target_case(cells=CELLS, num_classes=NUM_CLASSES):
    """One image, one real slot (a box over cells of every level) and one masked slot; raw finite."""
    raw = torch.randn((1, cells, 5 + num_classes), generator=torch.Generator().manual_seed(2)) * 0.3
    gt = torch.tensor([[[1.0, 20.0, 12.0, 14.0, 10.0], [0.0] * 5]])
    return raw, gt, torch.tensor([[True, False]])


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.parametrize("mode", MODES)
def test_malformed_real_slot_is_never_assigned_and_the_loss_is_nan(mode, kind):
    raw, gt, mask = one_target_case()
    gt = for_mode(gt, mode)
    assert eager_outputs(mode, raw, gt, mask)["fg_mask"].any()  # well formed, the target is matched
    column, value = MALFORMED[kind]
    gt[0, 0, column] = value
    got = eager_outputs(mode, raw, gt, mask)
    for prefix in ("", "graph."):
        assert not got[prefix + "fg_mask"].any() and (got[prefix + "matched_gt"] == -1).all()
    assert math.isnan(float(got["loss"])) and got["components"][:4].isnan().all()
    assert got["graph.loss_components"][:4].isnan().all() and math.isnan(float(got["graph.loss_components"][5]))


# ---------------------------------------------------------------------------------------------------------------
# onnxruntime


@pytest.fixture(scope="module")
def exported(shared_export, ort_runner):
    mode, path = shared_export
    return mode, ort_runner(path)


def ort_outputs(runner, raw, gt, mask):
    return runner.run({"predictions": raw, "targets": gt, "target_mask": mask})


@settings(PROFILE, max_examples=ORT_PADDING_EXAMPLES)
@given(case=padded_cases(ORT_IMAGE, ORT_CELLS, ORT_CLASSES))
def test_masked_garbage_is_zero_padding_onnxruntime(exported, case):
    mode, runner = exported
    raw, gt, mask, garbage = case
    gt, garbage = for_mode(gt, mode), for_mode(garbage, mode)
    note(f"{mode} {describe(gt, mask, garbage)}")
    want, got = ort_outputs(runner, raw, gt, mask), ort_outputs(runner, raw, garbage, mask)
    assert set(want) == set(OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        assert np.array_equal(got[name], want[name]), name


def test_malformed_real_slots_onnxruntime(exported):
    mode, runner = exported
    raw, gt, mask = one_target_case(ORT_CELLS, ORT_CLASSES)
    gt = for_mode(gt, mode)
    assert ort_outputs(runner, raw, gt, mask)["fg_mask"].any()
    for kind, (column, value) in malformed(ORT_CLASSES).items():
        bad = gt.clone()
        bad[0, 0, column] = value
        out = ort_outputs(runner, raw, bad, mask)
        assert not out["fg_mask"].any() and (out["matched_gt"] == -1).all(), kind
        assert np.isnan(out["loss_components"][[0, 1, 2, 3, 5]]).all(), kind


def test_empty_and_imageless_batches_onnxruntime(exported):
    from yolox_export import pad_targets

    mode, runner = exported
    for batch in (2, 0):
        raw = torch.randn((batch, ORT_CELLS, 5 + ORT_CLASSES), generator=torch.Generator().manual_seed(3))
        gt, mask = pad_targets(torch.zeros(0, 6), batch)  # G = 1, one masked slot per image
        out = ort_outputs(runner, raw, gt, mask)
        want = StaticYoloXLoss(ORT_STRIDES, ORT_CLASSES, mode=mode, use_l1=True).forward_padded(raw, gt, mask,
                                                                                               ORT_SHAPES)
        assert out["fg_mask"].shape == (batch, ORT_CELLS) and not out["fg_mask"].any()
        torch.testing.assert_close(torch.as_tensor(out["loss_components"]), want.components, rtol=1e-5, atol=1e-6)


# (cell, channel, value): huge but finite logits on background cells; decoded, the first two overflow float32
HUGE_LOGITS = {"x-3e38": (0, 0, 3e38), "log-w-89": (1, 2, 89.0), "obj-1e30": (2, 4, 1e30), "cls--1e30": (3, 6, -1e30)}


@pytest.mark.parametrize("kind", HUGE_LOGITS)
def test_huge_finite_logits_give_finite_components_onnxruntime(exported, kind):
    # finite in, finite out through the exported graph too: the same components as eager (whose gradient
    # tests/static/test_properties.py checks against the reference)
    mode, runner = exported
    raw, gt, mask = one_target_case(ORT_CELLS, ORT_CLASSES)
    gt = for_mode(gt, mode)
    cell, channel, value = HUGE_LOGITS[kind]
    raw[0, cell, channel] = value
    want = StaticYoloXLoss(ORT_STRIDES, ORT_CLASSES, mode=mode, use_l1=True, validate=False).forward_padded(
        raw, gt, mask, ORT_SHAPES)
    assert not want.assignment.fg_mask[0, cell] and want.assignment.fg_mask.any()
    got = torch.as_tensor(ort_outputs(runner, raw, gt, mask)["loss_components"])
    assert torch.isfinite(got).all() and torch.isfinite(want.components).all()
    torch.testing.assert_close(got, want.components, rtol=1e-5, atol=1e-6)
