"""Issue #7, fuzzing: hypothesis draws small grids, targets and predictions and checks that

* the static assignment equals the eager reference's of the same mode, every difference explained by a tie
  (``parity.comparison``'s tie analysis), in both modes;
* an exported graph under onnxruntime equals eager ``forward_padded`` on the grid it was exported for;
* finite in, finite out (issue #12): with huge but finite logits anywhere, where the reference of the same mode gives
  a finite loss and gradient, so does the static module, and the same loss where the assignments agree.

Runs derandomized (CI is reproducible) with ``PARITY_EXAMPLES`` examples per mode for the parity property and
``ORT_EXAMPLES`` per mode for onnxruntime; set ``YOLOX_EXPORT_HYPOTHESIS_EXAMPLES=N`` to run N parity examples per
mode (and N / 3 onnxruntime examples) with fresh randomness each run.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from yolox_export import LossConfig, StaticYoloXLoss
from yolox_export.config import MODES
from yolox_export.parity import compare
from yolox_export.parity.comparison import static_for
from yolox_export.reference import reference_for
from yolox_export.scenarios import _fit_to_targets

from support import SHARED_CLASSES, SHARED_IMAGE, SHARED_SHAPES, SHARED_STRIDES, for_mode, shared_config

# ---------------------------------------------------------------------------------------------------------------
# settings profiles

_REQUESTED = int(os.environ.get("YOLOX_EXPORT_HYPOTHESIS_EXAMPLES", "0") or 0)
PARITY_EXAMPLES = max(_REQUESTED, 150)
FINITE_EXAMPLES = max(_REQUESTED, 100)
ORT_EXAMPLES = max(_REQUESTED // 3, 50)

settings.register_profile(
    "yolox-export-ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.register_profile("yolox-export-long", settings.get_profile("yolox-export-ci"), derandomize=False)
PROFILE = settings.get_profile("yolox-export-long" if _REQUESTED else "yolox-export-ci")
PARITY_SETTINGS = settings(PROFILE, max_examples=PARITY_EXAMPLES)
ORT_SETTINGS = settings(PROFILE, max_examples=ORT_EXAMPLES, phases=[p for p in Phase if p != Phase.explain])

# the scenes draw boxes reaching outside the image on purpose: the "mostly outside" misreading warning is expected
pytestmark = pytest.mark.filterwarnings("ignore::yolox_export.validation.TargetWarning")
STRIDE_CHOICES = (4, 8, 16, 32)
MAX_SIDE = 128
MAX_TARGETS = 12  # per image; crowded scenes (100-200 targets) are tests/export/test_export_onnx.py's
STYLES = ("normal", "fresh", "constant_scores", "quantised", "fitted", "extreme")


# ---------------------------------------------------------------------------------------------------------------
# strategies


@dataclass
class Scene:
    strides: tuple[int, ...]
    image: tuple[int, int]
    num_classes: int
    predictions: list[torch.Tensor]  # per level [B, 1, H, W, 5 + C]
    targets: torch.Tensor  # [N, 6]
    style: str

    @property
    def batch(self) -> int:
        return int(self.predictions[0].shape[0])

    def describe(self) -> str:
        return (f"strides={self.strides} image={self.image} C={self.num_classes} B={self.batch} style={self.style} "
                f"targets={self.targets.tolist()}")


@st.composite
def grids(draw):
    """(strides, (H, W), C): 1-3 increasing strides from {4, 8, 16, 32}, sides multiples of the largest, <= 128."""
    count = draw(st.integers(1, 3))
    strides = tuple(sorted(draw(st.lists(st.sampled_from(STRIDE_CHOICES), min_size=count, max_size=count, unique=True))))
    top = strides[-1]
    height = top * draw(st.integers(1, MAX_SIDE // top))
    width = top * draw(st.integers(1, MAX_SIDE // top))
    return strides, (height, width), draw(st.integers(1, 8))


def coordinate(side: int):
    """Box centres anywhere from a quarter image outside to a quarter outside the other edge; half-integers
    often, so box edges land exactly on cell centres."""
    return st.one_of(
        st.floats(-0.25 * side, 1.25 * side, allow_nan=False, allow_infinity=False),
        st.integers(-side // 2, 5 * side // 2).map(lambda k: k / 2.0),
    )


def extent(side: int):
    """Box sizes: tiny (sub-pixel to 4 px), ordinary, larger than the image; integers often."""
    return st.one_of(
        st.floats(0.01, 4.0, allow_nan=False),
        st.floats(4.0, float(side), allow_nan=False),
        st.floats(float(side), 2.0 * side, allow_nan=False),
        st.integers(1, 2 * side).map(float),
    )


@st.composite
def target_rows(draw, batch: int, image: tuple[int, int], num_classes: int, max_per_image: int = MAX_TARGETS):
    """[N, 6] rows, 0..max_per_image per image, sometimes a duplicate of the previous box (same or other class)."""
    height, width = image
    rows = []
    for b in range(batch):
        for _ in range(draw(st.integers(0, max_per_image))):
            if rows and rows[-1][0] == b and draw(st.integers(0, 5)) == 5:  # shrinks towards no duplicate
                previous = list(rows[-1])
                previous[1] = float(draw(st.integers(0, num_classes - 1)))
                rows.append(previous)
                continue
            rows.append([float(b), float(draw(st.integers(0, num_classes - 1))), draw(coordinate(width)),
                         draw(coordinate(height)), draw(extent(width)), draw(extent(height))])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def make_predictions(style: str, seed: int, batch: int, strides, image, num_classes: int, targets: torch.Tensor):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for stride in strides:
        shape = (batch, 1, image[0] // stride, image[1] // stride, 5 + num_classes)
        if style == "fresh":  # freshly initialised head: ties everywhere
            p = torch.zeros(shape)
            p[..., 4:] = -4.59511985013459
        else:
            p = torch.randn(shape, generator=gen)
            p[..., :4] *= 0.5
            p[..., 4:] = p[..., 4:] * 2.0 - 3.0
            if style == "constant_scores":  # boxes differ, class costs tie
                p[..., 4:] = -2.0
            elif style == "quantised":  # many exactly equal IoUs and costs
                p = torch.round(p * 2.0) / 2.0
            elif style == "fitted":  # mid-training: cells near a target regress to it and score its class
                _fit_to_targets(p, stride, targets, gen)
            elif style == "extreme":  # saturated sigmoids: BCE's -100 log clamp ties class costs
                p[..., 4:] *= 20.0
        out.append(p)
    return out


@st.composite
def scenes(draw, grid=None, max_batch: int = 2):
    strides, image, num_classes = grid if grid is not None else draw(grids())
    batch = draw(st.integers(1, max_batch))
    targets = draw(target_rows(batch, image, num_classes))
    style = draw(st.sampled_from(STYLES))
    seed = draw(st.integers(0, 2**31 - 1))
    predictions = make_predictions(style, seed, batch, strides, image, num_classes, targets)
    return Scene(strides, image, num_classes, predictions, targets, style)


# ---------------------------------------------------------------------------------------------------------------
# static == reference, tie-aware


def check_parity(scene: Scene, mode: str) -> None:
    note(scene.describe())
    config = LossConfig(scene.strides, scene.num_classes, mode=mode)
    targets = for_mode(scene.targets, mode)
    want = reference_for(config).assign(scene.predictions, targets)
    got = static_for(config).assign(scene.predictions, targets)
    event(f"style: {scene.style}")
    event(f"targets: {'none' if scene.targets.shape[0] == 0 else 'some'}; fg cells: {'none' if not want.fg_mask.any() else 'some'}")
    if torch.equal(want.fg_mask, got.fg_mask) and torch.equal(want.matched_gt, got.matched_gt):
        event("parity: identical")
        fg = want.fg_mask
        torch.testing.assert_close(got.matched_iou[fg], want.matched_iou[fg], rtol=0, atol=1e-5)
        return
    # a difference: only a tie in SimOTA's own answer may explain it
    event("parity: differences, tie analysis run")
    report = compare([(scene.predictions, targets)], config, gradients=False)
    note(str(report))
    note(f"differences: {report.differences}")
    assert report.row("static", "fg_mask").real == 0, str(report)
    assert report.row("static", "matched_gt").real == 0, str(report)


@pytest.mark.parametrize("mode", MODES)
@PARITY_SETTINGS
@given(scene=scenes())
def test_static_assignment_equals_the_reference(mode, scene):
    check_parity(scene, mode)


# ---------------------------------------------------------------------------------------------------------------
# finite in, finite out

#: Huge but finite logits: exp overflows float32 from 88.7 (a size logit), a centre from about 1e37 at stride 32.
HUGE = st.one_of(
    st.sampled_from((88.0, 89.0, -89.0, 1e4, -1e4, 1e10, -1e10, 1e20, -1e20, 1e30, -1e30, 1e37, 3e38, -3e38)),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
)


@st.composite
def huge_logit_scenes(draw):
    """A scene with 1-3 logits (any level, cell and channel) replaced by huge finite values."""
    scene = draw(scenes())
    for _ in range(draw(st.integers(1, 3))):
        p = scene.predictions[draw(st.integers(0, len(scene.predictions) - 1))]
        p[tuple(draw(st.integers(0, n - 1)) for n in p.shape)] = draw(HUGE)
    return scene


def loss_and_gradients(module, scene: Scene):
    leaves = [p.clone().requires_grad_(True) for p in scene.predictions]
    loss, _, assignment = module.loss_and_assignment(leaves, for_mode(scene.targets, module.config.mode))
    return loss.detach(), torch.autograd.grad(loss, leaves), assignment


@pytest.mark.parametrize("mode", MODES)
@settings(PROFILE, max_examples=FINITE_EXAMPLES)
@given(scene=huge_logit_scenes())
def test_finite_inputs_give_a_finite_loss_and_gradient_where_the_reference_does(mode, scene):
    note(scene.describe())
    config = LossConfig(scene.strides, scene.num_classes, mode=mode)
    want, want_grads, want_assignment = loss_and_gradients(reference_for(config), scene)
    if not (torch.isfinite(want) and all(torch.isfinite(g).all() for g in want_grads)):
        event("reference not finite: no claim")
        return
    got, got_grads, got_assignment = loss_and_gradients(static_for(config), scene)
    assert torch.isfinite(got), f"static loss {got} where the reference's is {want}"
    for level, g in enumerate(got_grads):
        assert torch.isfinite(g).all(), f"non-finite gradient at level {level}: {(~torch.isfinite(g)).nonzero()[:4].tolist()}"
    if torch.equal(got_assignment.fg_mask, want_assignment.fg_mask) and torch.equal(got_assignment.matched_gt,
                                                                                    want_assignment.matched_gt):
        event("assignment identical: loss compared")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# exported graph == eager, on one fixed small grid per mode: the graph the onnxruntime tests share (conftest's
# shared_export: with the training targets and the L1 term, which this test's eager side therefore has too)

ORT_STRIDES = SHARED_STRIDES
ORT_IMAGE = SHARED_IMAGE
ORT_CLASSES = SHARED_CLASSES
ORT_SHAPES = SHARED_SHAPES
MISMATCH_PATH = os.path.join(tempfile.gettempdir(), "ort_mismatch.pt")


@pytest.fixture(scope="module")
def exported(shared_export, ort_runner):
    mode, path = shared_export
    return mode, ort_runner(path)


@st.composite
def padded_scenes(draw):
    """(raw [B, A, 5 + C], gt [B, G, 5], mask [B, G], scene): G = the largest count plus 0-3 slots of finite
    garbage (masked out, so it must not matter); sometimes one cell gets a NaN or an infinity."""
    scene = draw(scenes(grid=(ORT_STRIDES, ORT_IMAGE, ORT_CLASSES), max_batch=3))
    from yolox_export import pad_targets
    from yolox_export.grid import flatten_levels

    raw = flatten_levels(scene.predictions)
    gt, mask = pad_targets(scene.targets, scene.batch)
    extra = draw(st.integers(0 if gt.shape[1] > 0 else 1, 3))
    if extra:
        garbage = torch.tensor([[float(draw(st.integers(0, ORT_CLASSES - 1)))]
                                + [draw(st.floats(-1e3, 1e3, allow_nan=False)) for _ in range(4)]
                                for _ in range(scene.batch * extra)]).reshape(scene.batch, extra, 5)
        gt = torch.cat((gt, garbage), 1)
        mask = torch.cat((mask, torch.zeros((scene.batch, extra), dtype=torch.bool)), 1)
    poisoned = None
    if draw(st.integers(0, 4)) == 4:  # one case in five; shrinks towards no poisoning
        cell = (draw(st.integers(0, scene.batch - 1)), draw(st.integers(0, raw.shape[1] - 1)),
                draw(st.integers(0, raw.shape[2] - 1)))
        value = draw(st.sampled_from((math.nan, math.inf, -math.inf)))
        raw[cell] = value
        poisoned = (cell, value)
    return raw, gt, mask, scene, poisoned


def save_mismatch(raw, gt, mask, mode, scene, poisoned, message):
    """Keep the latest failing case per mode in MISMATCH_PATH: hypothesis replays the shrunk (minimal) example last,
    so after a run the file holds each mode's minimal failing example."""
    saved = torch.load(MISMATCH_PATH, weights_only=False) if os.path.exists(MISMATCH_PATH) else {}
    if not isinstance(saved, dict) or not set(saved) <= set(MODES):
        saved = {}
    saved[mode] = {"predictions": raw, "targets": gt, "target_mask": mask, "strides": ORT_STRIDES,
                   "image_size": ORT_IMAGE, "num_classes": ORT_CLASSES, "style": scene.style, "poisoned": poisoned,
                   "message": message}
    torch.save(saved, MISMATCH_PATH)


@ORT_SETTINGS
@given(case=padded_scenes())
def test_onnxruntime_equals_eager(exported, case):
    """Cell for cell equal, or every differing cell explained by a tie given onnxruntime's ulps (the policy of
    tests/export/test_export_onnx.py); matched IoU and loss components equal where the assignments are."""
    mode, runner = exported
    raw, gt, mask, scene, poisoned = case
    gt = for_mode(gt, mode)  # the garbage in masked slots stays garbage
    note(f"{mode} {scene.describe()} G={gt.shape[1]} poisoned={poisoned}")
    got = {k: torch.as_tensor(v) for k, v in runner.run({"predictions": raw, "targets": gt, "target_mask": mask}).items()}
    config = shared_config(mode)
    want = StaticYoloXLoss.from_config(config, validate=False).forward_padded(raw, gt, mask, ORT_SHAPES)
    a = want.assignment
    differs = (got["fg_mask"] != a.fg_mask) | (got["matched_gt"] != a.matched_gt)
    try:
        unexplained = unexplained_cells(differs, raw, gt, mask, config)
        assert not unexplained, f"{mode}: cells (image, cell) differ without a tie explaining them: {unexplained}"
        same = ~differs
        torch.testing.assert_close(got["matched_iou"][same], a.matched_iou[same], rtol=0, atol=1e-5)
        if not differs.any():
            torch.testing.assert_close(got["loss_components"], want.components, rtol=1e-5, atol=1e-6, equal_nan=True)
    except AssertionError as error:
        save_mismatch(raw, gt, mask, mode, scene, poisoned, str(error))
        raise
    event(f"onnxruntime: {'tie-explained difference' if differs.any() else 'identical'}")
    if poisoned is not None:
        (b, cell, channel), value = poisoned
        assert not bool(got["fg_mask"][b, cell]), f"non-finite cell {(b, cell, channel)} assigned"


def unexplained_cells(differs, raw, gt, mask, config) -> list[tuple[int, int]]:
    from yolox_export.grid import make_grid
    from yolox_export.parity import RUNTIME_ULPS
    from yolox_export.parity.ties import image_ties

    grid = make_grid(ORT_SHAPES, config.strides)
    found = []
    for b in differs.any(1).nonzero().flatten().tolist():
        explained = torch.zeros_like(differs[b])
        if bool(mask[b].any()):
            explained = image_ties(raw[b], gt[b][mask[b]], grid, config, RUNTIME_ULPS["onnxruntime"]).explained_cells
        found += [(b, int(c)) for c in (differs[b] & ~explained).nonzero().flatten()]
    return found


def test_exported_inputs_are_the_signature_test_validation_checks(exported):
    """test_validation.py's OrtRunner tests use a stand-in model with these inputs; keep them in step."""
    mode, runner = exported
    cells = sum(h * w for h, w in ORT_SHAPES)
    specs = {s.name: (s.shape, s.ort_type) for s in runner.input_specs}
    assert specs == {"predictions": (("batch", cells, 5 + ORT_CLASSES), "tensor(float)"),
                     "targets": (("batch", "max_gt", 5), "tensor(float)"),
                     "target_mask": (("batch", "max_gt"), "tensor(bool)")}
