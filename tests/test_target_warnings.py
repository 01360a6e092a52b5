"""Issue #12 item 4: targets that are valid but look misread get a ``TargetWarning`` naming the likely mistake,
once per module instance, at every validating entry point; nothing is rescaled, and valid pixel targets get none.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from yolox_export import FastYoloXLoss, RegularYoloXLoss, StaticYoloXLoss, pad_targets
from yolox_export.config import MODES
from yolox_export.grid import flatten_levels, level_shapes
from yolox_export.scenarios import boxes_in_format, make_scenario
from yolox_export.validation import TargetWarning, misreadings

from support import for_mode

STRIDES = (8, 16, 32)
NUM_CLASSES = 3
IMAGE = (64, 96)
BATCH = 2


def levels(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn((BATCH, 1, IMAGE[0] // s, IMAGE[1] // s, 5 + NUM_CLASSES), generator=gen) * 0.3 for s in STRIDES]


PIXELS = torch.tensor([[0, 1, 20.0, 20.0, 16.0, 12.0],
                       [1, 2, 40.0, 30.0, 20.0, 24.0],
                       [1, 0, 70.0, 40.0, 30.0, 20.0]])
# the same boxes divided by the image size (96 wide, 64 high): every coordinate within [0, 1]
NORMALISED = PIXELS / torch.tensor([1.0, 1.0, 96.0, 64.0, 96.0, 64.0])
# corners (x1, y1, x2, y2) of boxes in the lower right of the 64x96 image, read as (cx, cy, w, h): the first spans
# x in [32.5, 127.5] and y in [18.5, 81.5], so 63.5 / 95 x 45.5 / 63 = 0.48 of it is inside; the others 0.39, 0.40
CORNERS = torch.tensor([[0, 1, 80.0, 50.0, 95.0, 63.0],
                        [1, 2, 85.0, 55.0, 96.0, 64.0],
                        [1, 0, 88.0, 52.0, 94.0, 62.0]])

ENTRY_POINTS = {
    "regular": lambda **kw: RegularYoloXLoss(STRIDES, NUM_CLASSES, **kw),
    "fast": lambda **kw: FastYoloXLoss(STRIDES, NUM_CLASSES, **kw),
    **{f"static-{m}": (lambda m: lambda **kw: StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=m, **kw))(m) for m in MODES},
}
CALLS = {
    "forward": lambda module, t: module(levels(), t),
    "assign": lambda module, t: module.assign(levels(), t),
}


def padded_call(module, t):
    p = levels()
    return module.forward_padded(flatten_levels(p), *pad_targets(t, BATCH), level_shapes(p))


def target_warnings(run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if issubclass(w.category, TargetWarning)]


def entry_calls():
    cases = [(m, c) for m in ENTRY_POINTS for c in CALLS]
    return cases + [(m, "forward_padded") for m in ENTRY_POINTS if m.startswith("static")]


def run(module, call, t):
    """``call`` on targets ``t`` written as (cx, cy, w, h), given in the module's box format (``for_mode``)."""
    t = for_mode(t, module.config.mode)
    return padded_call(module, t) if call == "forward_padded" else CALLS[call](module, t)


@pytest.mark.parametrize("entry,call", entry_calls())
def test_normalised_targets_warn_once_per_instance(entry, call):
    module = ENTRY_POINTS[entry]()
    first = target_warnings(lambda: run(module, call, NORMALISED))
    assert len(first) == 1 and first[0].startswith("all target coordinates lie within [0, 1]: are they normalised?")
    assert "64x96 image" in first[0] and "nothing is rescaled" in first[0]
    assert target_warnings(lambda: run(module, call, NORMALISED)) == []  # once per instance
    assert len(target_warnings(lambda: run(ENTRY_POINTS[entry](), call, NORMALISED))) == 1  # a new instance warns


@pytest.mark.parametrize("entry,call", entry_calls())
def test_corner_boxes_warn(entry, call):
    module = ENTRY_POINTS[entry]()
    found = target_warnings(lambda: run(module, call, CORNERS))
    if module.config.box_format.name == "xyxy":  # (cx, cy, w, h) boxes read as corners: mostly outside too
        assert found == ["3 of 3 target boxes lie mostly outside the 64x96 image: are they centres and sizes (cx, "
                         "cy, w, h)? Targets are (x1, y1, x2, y2) in pixels; nothing is converted"]
        return
    assert found == ["3 of 3 target boxes lie mostly outside the 64x96 image: are they corners (x1, y1, x2, y2)? "
                     "Targets are (cx, cy, w, h) in pixels; nothing is converted"]


@pytest.mark.parametrize("entry,call", entry_calls())
def test_pixel_targets_do_not_warn(entry, call):
    assert target_warnings(lambda: run(ENTRY_POINTS[entry](), call, PIXELS)) == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_without_validation_nothing_is_read_and_nothing_warns(entry):
    assert target_warnings(lambda: ENTRY_POINTS[entry](validate=False)(levels(), NORMALISED)) == []


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_warning_changes_nothing(entry):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warned = run(ENTRY_POINTS[entry](), "forward", NORMALISED)
    silent = run(ENTRY_POINTS[entry](validate=False), "forward", NORMALISED)
    assert torch.equal(warned[0], silent[0]) and torch.equal(warned[1], silent[1])


def test_masked_slots_are_not_looked_at():
    # masked slots hold normalised-looking garbage; the real ones are pixels
    p = levels()
    gt, mask = pad_targets(PIXELS, BATCH, max_gt=4)
    gt[~mask] = 0.5
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES)
    assert target_warnings(lambda: module.forward_padded(flatten_levels(p), gt, mask, level_shapes(p))) == []


def test_misreadings_thresholds():
    image = (64, 96)
    boxes = PIXELS[:, 2:]
    assert misreadings(boxes, image) == {}
    assert set(misreadings(NORMALISED[:, 2:], image)) == {"normalised"}
    # one coordinate above 1 is enough to read the boxes as pixels
    almost = NORMALISED[:, 2:].clone()
    almost[0, 0] = 1.5
    assert misreadings(almost, image) == {}
    # a box centred on the right edge has half its area inside: not "mostly outside" (the share must be < 0.5)
    edge = torch.tensor([[96.0, 32.0, 20.0, 20.0]] * 3)
    assert misreadings(edge, image) == {}
    # 2 of 3 boxes mostly outside is "most"; 1 of 2 is not
    outside = torch.tensor([[100.0, 32.0, 10.0, 10.0], [-20.0, 32.0, 10.0, 10.0], [48.0, 32.0, 10.0, 10.0]])
    assert set(misreadings(outside, image)) == {"format"}
    assert misreadings(outside[1:], image) == {}
    assert misreadings(torch.zeros(0, 4), image) == {}


# ---------------------------------------------------------------------------------------------------------------
# the other box format, in both directions, on realistic batches


def realistic_batches():
    """Seeded batches of every realistic kind, at two image sizes: (kind, image, (cx, cy, w, h) boxes [n, 4])."""
    for kind in ("coco", "crowded", "sparse", "border", "fitted", "duplicates"):
        for image in ((640, 640), (128, 160)):
            for seed in range(3):
                targets = make_scenario(kind, batch_size=4, image_size=image, num_classes=5, seed=seed).targets
                if targets.shape[0] >= 2:
                    yield kind, image, targets[:, 2:6]


def test_correct_batches_get_no_format_warning():
    from yolox_export.box_format import CENTRE_SIZE, CORNERS as CORNER_FORMAT

    for kind, image, boxes in realistic_batches():
        assert "format" not in misreadings(boxes, image, CENTRE_SIZE), (kind, image)
        assert "format" not in misreadings(boxes_in_format(boxes, "xyxy"), image, CORNER_FORMAT), (kind, image)


def test_misread_batches_are_warned_or_refused_in_both_directions():
    """Corner boxes given to a (cx, cy, w, h) mode are valid there (w = x2 > 0) and must be warned about; (cx, cy,
    w, h) boxes given to the corner mode are refused by validation (x2 < x1) unless every one happens to be a valid
    corner box, and then they must be warned about."""
    from yolox_export.box_format import CENTRE_SIZE, CORNERS as CORNER_FORMAT

    for kind, image, boxes in realistic_batches():
        corners = boxes_in_format(boxes, "xyxy")
        assert "format" in misreadings(corners, image, CENTRE_SIZE), (kind, image)
        refused = not bool(CORNER_FORMAT.extent_ok(boxes).all())
        assert refused or "format" in misreadings(boxes, image, CORNER_FORMAT), (kind, image)


def test_a_coco_like_corner_batch_warns_through_the_module():
    s = make_scenario("coco", batch_size=4, image_size=(320, 320), num_classes=5, seed=1)
    corners = torch.cat((s.targets[:, :2], boxes_in_format(s.targets[:, 2:6], "xyxy")), 1)
    with pytest.warns(TargetWarning, match="better read as corners"):
        StaticYoloXLoss(s.strides, 5)(s.predictions, corners)


def test_a_zero_area_corner_box_inside_the_image_is_no_format_warning():
    from yolox_export.box_format import CORNERS as CORNER_FORMAT

    boxes = torch.tensor([[100.0, 100.0, 100.0, 150.0], [200.0, 200.0, 250.0, 250.0]])  # x2 = x1: zero width
    assert "format" not in misreadings(boxes, (640, 640), CORNER_FORMAT)
