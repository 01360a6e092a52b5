"""Shared test helpers (``from support import ...``); ``conftest.py`` holds only pytest's hooks and fixtures.
The package is installed (editable); run pytest from the repository root.

Hand-built heads for the reference tests: one level, stride 8, a 32x32 image -> a 4x4 grid, 16 cells, cell index
= 4 * y + x; a level is [B, 1, H, W, 5 + C] with (tx, ty, tw, th, obj, cls_0, cls_1, ...).
"""

from __future__ import annotations

import importlib.util
import math
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from yolox_export.assignment import Assignment
from yolox_export.config import LossConfig
from yolox_export.scenarios import boxes_in_format

ROOT = Path(__file__).resolve().parents[1]


#: The one setting the onnxruntime tests share (tests/static/test_properties.py, tests/static/test_sanitise.py,
#: tests/export/test_export_onnx.py): a graph per mode with the training targets and the L1 term, so that one
#: export per mode serves them all.
SHARED_STRIDES = (8, 16, 32)


SHARED_IMAGE = (128, 160)  # grids 16x20, 8x10, 4x5: 420 cells


SHARED_CLASSES = 6


SHARED_SHAPES = [(SHARED_IMAGE[0] // s, SHARED_IMAGE[1] // s) for s in SHARED_STRIDES]


SHARED_CELLS = sum(h * w for h, w in SHARED_SHAPES)


def shared_preset(mode):
    from yolox_export.export.presets import Preset

    return Preset(name=f"shared_{mode}", image_size=SHARED_IMAGE, strides=SHARED_STRIDES, num_classes=SHARED_CLASSES,
                  mode=mode, batch=(1, 2, 8), max_gt=(1, 8, 256), opset=20)


def shared_config(mode):
    from yolox_export import LossConfig

    return LossConfig(SHARED_STRIDES, SHARED_CLASSES, mode=mode, use_l1=True)


#: The gradient graph (``with_grad``) the onnxruntime gradient tests share (tests/export/test_export_grad.py,
#: tests/demo/test_demo_graph.py, parity and bench): 64x64, three levels (84 cells), 3 classes, L1 on: the demo's
#: test settings. Its export costs about 15 s a mode on this CPU, which the five-minute budget of the default suite
#: has no room for: those tests run under ``--full`` (``grad_mode``: every mode), and by default they are skipped
#: with that reason; the default suite checks the gradient graph's trace instead (tests/export/test_grad_graph.py,
#: the same graph before the exporter, run in torch).
GRAD_IMAGE = (64, 64)


GRAD_CLASSES = 3


GRAD_SHAPES = [(GRAD_IMAGE[0] // s, GRAD_IMAGE[1] // s) for s in SHARED_STRIDES]


def grad_preset(mode):
    from yolox_export.export.presets import Preset

    return Preset(name=f"grad_{mode}", image_size=GRAD_IMAGE, strides=SHARED_STRIDES, num_classes=GRAD_CLASSES,
                  mode=mode, batch=(1, 2, 8), max_gt=(1, 8, 256), opset=20, with_grad=True)


def grad_config(mode):
    from yolox_export import LossConfig

    return LossConfig(SHARED_STRIDES, GRAD_CLASSES, mode=mode, use_l1=True)


#: The modes whose padded module the compiled-runner tests compile by default (AOT autograd with symbolic B and G,
#: about 5-10 s a mode): the windowed form (megvii); every mode under --full. The dense modes run the same code
#: with other rules, and every mode's drop-in is compiled by tests/static/test_compile.py.
COMPILED_MODES = ("megvii",)
#: The modes whose drop-in tests/static/test_compile.py compiles with inductor and compares with eager by default
#: (10-20 s a mode): the dense form (regular) and the windowed form (megvii); every mode under --full. Every mode
#: is compiled to one graph (with dynamo's counter, no inductor) by default.
INDUCTOR_MODES = ("regular", "megvii")


GRAD_EXPORT_SKIP = ("exports the gradient graph to ONNX (about 15 s a mode; the suite's five-minute budget): runs "
                    "under --full; by default tests/export/test_grad_graph.py checks the same graph's trace in torch")


def load_script(name):
    """``scripts/<name>.py`` loaded as a module (its ``build_parser`` and ``main``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def onnx_export_answers(exporting: bool):
    """Run the export-safe forms (``static.export_form.exporting()`` True) when ``exporting``, else the eager ones:
    a function's export branch eagerly, without exporting, so that a test can compare the two branches value for
    value."""
    from yolox_export.static.export_form import export_form

    with export_form() if exporting else nullcontext():
        yield


LN2 = math.log(2.0)


# Loss values: float32 math over a handful of terms. float64 heads still go through a float32 assignment (the
# matched IoU that feeds the class target is float32, ~6e-8 relative), hence 1e-6 rather than ~1e-12.
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-6, atol=1e-6)}


# Matched IoUs are float32 in the Assignment whatever the head's dtype.
IOU_TOL = dict(rtol=1e-6, atol=1e-6)


def softplus(x):
    return math.log1p(math.exp(x))


def bce_logits(x, y):
    """BCE-with-logits of logit x against target y: softplus(x) - x * y."""
    return softplus(x) - x * y


def head(batch=1, h=4, w=4, num_classes=2, dtype=torch.float32):
    return torch.zeros(batch, 1, h, w, 5 + num_classes, dtype=dtype)


def set_cell(level, cell, b=None, box=None, obj=None, cls=None):
    """Write logits of cell index ``cell`` (row-major) in image ``b`` (all images when None)."""
    y, x = divmod(cell, level.shape[3])
    images = range(level.shape[0]) if b is None else [b]
    for i in images:
        if box is not None:
            level[i, 0, y, x, :4] = torch.tensor(box, dtype=level.dtype)
        if obj is not None:
            level[i, 0, y, x, 4] = obj
        if cls is not None:
            for c, v in cls.items():
                level[i, 0, y, x, 5 + c] = v


def fg_cells(assignment, b=0):
    return assignment.fg_mask[b].nonzero().squeeze(1).tolist()


def main_case(batch=1, dtype=torch.float32, image=0):
    """One target, class 1, box (cx, cy, w, h) = (4, 4, 8, 8) -> [0, 8] x [0, 8].

    Candidates (centre test |c - 4| < 20 on each axis: 4, 12, 20 in, 28 out): cells with x, y in {0, 1, 2}
    = {0, 1, 2, 4, 5, 6, 8, 9, 10}. In box (0 < c < 8 strictly): only centre 4 -> cell 0 is the only strong cell.

    Predictions (all other logits 0):
      cell 0 (0,0): t = (.25, .25, 0, 0), cls_1 = 1 -> box centre (2, 2), [-2, 6]^2:
                    inter 6 * 6 = 36, union 64 + 64 - 36 = 92, IoU = 9/23 = 0.391304
      cell 1 (1,0): t = (-.5, .5, 0, 0)             -> centre (4, 4) = the target, IoU 1
      cell 4 (0,1): t = (.5, -.5, 0, 0), cls_1 = 4  -> centre (4, 4) = the target, IoU 1
      cell 3 (3,0): t = (-2.5, .5, 0, 0)            -> centre (4, 4), IoU 1, but NOT a candidate (centre 28 is 24 away)
      cell 5 (1,1): default centre (8, 8), [4, 12]^2: inter 16, union 112, IoU 1/7 = 0.142857
      cells 2, 6, 8, 9, 10 (default): no overlap, IoU 0
    dynamic k: regular int(9/23 + 1 + 1 + 1/7) = int(2.534161) = 2; fast long(2.534161 * 1.1 = 2.787578) = 2.
    Class costs (class 1): -log(1 - p_0) - log(p_1), p_0 = 0.5:
      cell 0: p_1 = sqrt(sigmoid(1) / 2) = 0.604590 -> 0.693147 + 0.503206 = 1.196353
      cell 1: 2 ln2 = 1.386294;  cell 4: p_1 = sqrt(sigmoid(4) / 2) = 0.700719 -> 0.693147 + 0.355649 = 1.048796
    Costs: cell 0 (strong) 1.196353 + 3 * -log(9/23) = 1.196353 + 2.814810 = 4.011163
           cell 4: 1e5 + 1.048796;  cell 1: 1e5 + 1.386294;  cell 5: 1e5 + 1.386294 + 3 * ln 7 = 1e5 + 7.224;  IoU-0: 1e5 + 56.6
    -> the two cheapest: cells 0 and 4 (cell 4 beats cell 1 only through its class logit).
    """
    p = head(batch=batch, dtype=dtype)
    set_cell(p, 0, box=(0.25, 0.25, 0, 0), cls={1: 1.0})
    set_cell(p, 1, box=(-0.5, 0.5, 0, 0))
    set_cell(p, 4, box=(0.5, -0.5, 0, 0), cls={1: 4.0})
    set_cell(p, 3, box=(-2.5, 0.5, 0, 0))
    targets = torch.tensor([[image, 1, 4, 4, 8, 8]], dtype=dtype)
    return p, targets


# Hand-computed terms of the main case (num_fg = 2):
#   iou: cell 0: 1 - (9/23)^2 = 448/529 = 0.846881, cell 4: 1 - 1 = 0             -> 0.846881 / 2 = 0.423440
#   obj: every objectness logit is 0 -> each of the 16 cells costs ln2             -> 16 ln2 / 2 = 5.545177
#   cls: cell 0 logits (0, 1) vs (0, 9/23): ln2 + softplus(1) - 9/23 = 0.693147 + 0.921957
#        cell 4 logits (0, 4) vs (0, 1):    ln2 + softplus(-4)       = 0.693147 + 0.018150   -> 2.326402 / 2 = 1.163201
MAIN_IOU = (1 - (9 / 23) ** 2) / 2


MAIN_CLS = (LN2 + bce_logits(1.0, 9 / 23) + LN2 + bce_logits(4.0, 1.0)) / 2


def box_format_of(mode):
    """The name of ``mode``'s box format ("cxcywh", or "xyxy" for mmdet), for ``make_scenario(box_format=...)``."""
    return LossConfig((8,), 1, mode=mode).box_format.name


def for_mode(targets, mode):
    """Targets written as (cx, cy, w, h) (rows [..., 6] with the box at columns 2:6, or padded rows [..., 5] with it
    at 1:5) in ``mode``'s box format: unchanged, or as corners for mmdet mode (``scenarios.boxes_in_format``)."""
    start = 2 if targets.shape[-1] == 6 else 1
    boxes = boxes_in_format(targets[..., start:start + 4], box_format_of(mode))
    return torch.cat((targets[..., :start], boxes, targets[..., start + 4:]), dim=-1)


def agrees_up_to_ties(got: Assignment, want: Assignment, predictions, targets: torch.Tensor,
                      config: LossConfig) -> bool:
    """Compare two arithmetics' assignments (``got``, e.g. the static module's, against ``want``, the reference's)
    as parity does: True when they agree cell for cell; otherwise every differing cell must be explained by a tie in
    the reference's own answer (``parity.ties``; AssertionError if not), and False says the losses legitimately
    differ. A float32 near-tie may resolve differently on another CPU (AVX2 / AVX-512), so such tests never rely on
    the last ulp of either arithmetic."""
    from yolox_export.parity.comparison import tie_explained_cells

    differs = (got.fg_mask != want.fg_mask) | (got.matched_gt != want.matched_gt)  # [B, A]
    if not bool(differs.any()):
        return True
    explained = tie_explained_cells(differs, predictions, targets, config)
    unexplained = int((differs & ~explained).sum())
    assert unexplained == 0, f"{unexplained} of {int(differs.sum())} differing cells are not explained by a tie"
    return False


class LargestTensor(TorchDispatchMode):
    """Records the largest element count of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def contract_feeds(batch: int, slots: int, cells: int, classes: int) -> dict:
    """Feeds of the graph's contract: random predictions [B, A, 5 + C], zero targets [B, G, 5], an all-False mask."""
    return {"predictions": torch.randn(batch, cells, 5 + classes), "targets": torch.zeros(batch, slots, 5),
            "target_mask": torch.zeros(batch, slots, dtype=torch.bool)}


#: The fixed-G graph that tests/export/test_export_chunked.py and tests/cli/test_parity_cli.py share: fast mode,
#: 64x64, 3 classes, G fixed at 12, chunks of 5 (three: 5, 5, 2 targets).
CHUNKED_G, CHUNKED_PER_CHUNK = 12, 5


def chunked_graph(exported_graph) -> Path:
    """The shared fixed-G graph, from the ``exported_graph`` fixture."""
    from yolox_export.export.presets import Preset

    preset = Preset(name="chunked", image_size=(64, 64), strides=(8, 16, 32), num_classes=3, mode="fast",
                    batch=(1, 2, 4), max_gt=(CHUNKED_G,) * 3, opset=20)
    return exported_graph(preset, targets_per_chunk=CHUNKED_PER_CHUNK)
