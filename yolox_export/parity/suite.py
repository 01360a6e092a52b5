"""The batches parity compares: the built-in seeded scenario suite, or batches recorded in a training step.

Everything that can be wrong with them (a missing or malformed ``.pt`` file, sizes the generator cannot honour)
raises :class:`InputError` with a one-line message naming the file or parameter, before any comparison runs.
Predictions are per-level lists [B, 1, H, W, 5 + C]; targets [N, 6] rows (image_index, class, then the box in the
modes' format: cx, cy, w, h, or x1, y1, x2, y2 for mmdet mode; the built-in suite is generated as (cx, cy, w, h) and
given to a corner-box mode as corners, ``in_format``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..box_format import CENTRE_SIZE, BoxFormat
from ..config import MODE_RULES, MODES
from ..scenarios import KINDS, HeadBatch, in_box_format, make_scenario
from ..validation import check_predictions, check_targets, unwrap_model_output

#: The modes compared when none are named: those whose targets are (cx, cy, w, h), the format of a recorded file
#: unless it is one for mmdet mode (corners), which is compared when named (``--modes mmdet``).
DEFAULT_MODES = tuple(mode for mode in MODES if MODE_RULES[mode].box_format == CENTRE_SIZE.name)
DEFAULT_SEEDS = 2
DEFAULT_BATCH_SIZE = 2
DEFAULT_IMAGE_SIZE = (640, 640)
DEFAULT_NUM_CLASSES = 80
DEFAULT_STRIDES = (8, 16, 32)
DEFAULT_PLOT_LIMIT = 20
#: Per-kind cap on the built-in suite's seeds. The regular reference builds a [G, candidates, C] class-cost tensor
#: per image; on 'crowded' (100-200 targets covering most of a 640x640 image) that is ~80M floats, computed twice
#: per batch (assign and loss), and one seed of it costs about as much as every other kind's two seeds together.
SEED_CAPS = {"crowded": 1}

RECORDED_FORMAT = ("a torch.save'd dict with 'predictions' (per-level list of [B, 1, H, W, 5 + C] tensors) and "
                   "'targets' ([N, 6] tensor: image_index, class, cx, cy, w, h in pixels)")


class InputError(Exception):
    """A usage or input problem, reported as one line and exit code 2."""


class MissingArtifactError(InputError):
    """A subject lacks its exported artifact (ONNX file, TensorRT engine) for some ``modes``."""

    def __init__(self, subject: str, modes: Sequence[str]):
        super().__init__(f"subject {subject}: no exported file for mode(s) {list(modes)} (give one per mode)")
        self.subject = subject
        self.modes = list(modes)


@dataclass
class Batch(HeadBatch):
    """One batch to compare: a label for the report, per-level predictions [B, 1, H, W, 5 + C], targets [N, 6]."""

    label: str
    predictions: list[Tensor]
    targets: Tensor

    @property
    def num_classes(self) -> int:
        return int(self.predictions[0].shape[-1]) - 5

    def image_size(self, strides: Sequence[int]) -> tuple[int, int]:
        return self.image_size_for(strides)



def check_suite_options(kinds: Sequence[str], seeds: int, batch_size: int, image_size: Sequence[int],
                        num_classes: int, strides: Sequence[int]) -> None:
    """Raise :class:`InputError` for options the scenario generator cannot honour."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError(f"unknown scenario kind(s) {unknown}; choose from {list(KINDS)}")
    for name, value in (("seeds", seeds), ("batch_size", batch_size), ("num_classes", num_classes)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    _check_strides(strides)
    height, width = image_size
    if height < 1 or width < 1:
        raise InputError(f"image_size must be positive, got {height} {width}")
    bad = [s for s in strides if height % s or width % s]
    if bad:
        raise InputError(f"image size {height}x{width} is not divisible by stride(s) {bad}")
    from ..export.presets import TENSOR_ELEMENT_LIMIT

    cells = sum((height // s) * (width // s) for s in strides)
    elements = batch_size * cells * (5 + num_classes)
    if elements > TENSOR_ELEMENT_LIMIT:
        raise InputError(f"batch_size, image_size, num_classes: a batch's predictions [B, A, 5 + C] = [{batch_size}, "
                         f"{cells}, {5 + num_classes}] would hold {elements} elements, over {TENSOR_ELEMENT_LIMIT} "
                         "(the exported graphs' limit)")


def _check_strides(strides: Sequence[int]) -> None:
    if not strides or any(s < 1 for s in strides):
        raise InputError(f"strides must be positive integers, got {list(strides)}")


def suite_seeds(kind: str, seeds: int) -> range:
    """Seeds of ``kind`` in the built-in suite: ``seeds``, capped by :data:`SEED_CAPS`."""
    return range(min(seeds, SEED_CAPS.get(kind, seeds)))


def build_suite(kinds: Sequence[str] = KINDS, seeds: int = DEFAULT_SEEDS, batch_size: int = DEFAULT_BATCH_SIZE,
                image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, num_classes: int = DEFAULT_NUM_CLASSES,
                strides: Sequence[int] = DEFAULT_STRIDES, cap: bool = True) -> list[Batch]:
    """The built-in seeded suite: each kind with seeds 0 .. seeds - 1 (capped per kind by :data:`SEED_CAPS` unless
    ``cap`` is False)."""
    check_suite_options(kinds, seeds, batch_size, image_size, num_classes, strides)
    batches = []
    for kind in kinds:
        for seed in (suite_seeds(kind, seeds) if cap else range(seeds)):
            s = make_scenario(kind, batch_size=batch_size, image_size=tuple(image_size), num_classes=num_classes,
                              strides=tuple(strides), seed=seed)
            batches.append(Batch(f"{kind} seed {seed}", s.predictions, s.targets))
    return batches


def in_format(batches: Sequence[Batch], box_format: BoxFormat) -> list[Batch]:
    """The built-in suite's batches (targets generated as (cx, cy, w, h)) with their targets in ``box_format``:
    as they are, or as corners computed once (``scenarios.in_box_format``; those corners are then the truth)."""
    return [Batch(b.label, b.predictions, in_box_format(b.targets, box_format.name)) for b in batches]


def load_recorded(path: str | Path, strides: Sequence[int] = DEFAULT_STRIDES,
                  num_classes: int | None = None, box_format: BoxFormat = CENTRE_SIZE) -> Batch:
    """Load and validate one recorded batch (see :data:`RECORDED_FORMAT`).

    ``num_classes`` None infers it from the predictions' last dimension (5 + C). Predictions may also be stored as
    the head's (eval output, per-level list) tuple. Tensors are detached and moved to the CPU; predictions become
    float32 (the dtype the static assignment and the exported graphs compute in). Raises :class:`InputError`
    naming the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is an input error
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: torch.load cannot read it ({first}); expected {RECORDED_FORMAT}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: holds a {type(data).__name__}; expected {RECORDED_FORMAT}")
    missing = [key for key in ("predictions", "targets") if key not in data]
    if missing:
        raise InputError(f"{path}: missing key(s) {missing}; expected {RECORDED_FORMAT}")
    try:
        predictions = unwrap_model_output(data["predictions"])
        if not predictions:
            raise ValueError("'predictions' is an empty list; expected one [B, 1, H, W, 5 + C] tensor per stride")
        for level, p in enumerate(predictions):
            if not isinstance(p, Tensor):
                raise TypeError(f"prediction level {level} is a {type(p).__name__}, not a tensor")
        first = predictions[0]
        inferred = int(first.shape[-1]) - 5 if first.dim() == 5 else None
        if num_classes is None:
            if inferred is None or inferred < 1:
                raise ValueError(f"prediction level 0 has shape {tuple(first.shape)}; expected [B, 1, H, W, 5 + C] "
                                 "with C >= 1")
            num_classes = inferred
        check_predictions(predictions, tuple(strides), num_classes)
        targets = data["targets"]
        if not isinstance(targets, Tensor):
            raise TypeError(f"'targets' is a {type(targets).__name__}; expected an [N, 6] tensor")
        check_targets(targets.detach().cpu(), int(first.shape[0]), num_classes, box_format=box_format)
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: {error}") from None
    predictions = [p.detach().cpu().float() for p in predictions]
    return Batch(path.name, predictions, data["targets"].detach().cpu().float())


def load_recorded_batches(paths: Sequence[str | Path], strides: Sequence[int] = DEFAULT_STRIDES,
                          num_classes: int | None = None,
                          box_format: BoxFormat = CENTRE_SIZE) -> tuple[list[Batch], int]:
    """Every recorded file (see :func:`load_recorded`) and the one class count they share."""
    _check_strides(strides)
    if num_classes is not None and num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    batches = [load_recorded(p, strides, num_classes, box_format) for p in paths]
    counts = sorted({b.num_classes for b in batches})
    if len(counts) > 1:
        raise InputError(f"the recorded files have different class counts {counts}; compare them in separate runs")
    return batches, counts[0]
