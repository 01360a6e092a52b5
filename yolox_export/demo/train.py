"""Training-curve parity: train one detector twice per mode, once with the eager reference loss and once with its
static twin, from the same initial weights on the same batches in the same order with the same optimiser.

Per step it records both runs' loss components and wall times (whole step: forward, loss, backward, optimiser step;
and the loss call alone), and compares the static module with the reference on identical inputs: its loss
components and assignment on the reference run's own predictions (single-batch parity at every step of a real
training; differing cells go through the parity layer's tie analysis, ``yolox_export.parity.ties``). It also notes where
the static run's own assignment (on its own, possibly drifted, predictions) differs from the reference run's, and
analyses the first step where either comparison differs.

The static loss (``StaticYoloXLoss`` as built here: validating, padding to each batch's largest count) computes
its loss with the references' own function over the matched cells (``matched_loss``), so its loss and
gradient are the reference's bit for bit on the same input, and the static run's weights stay the reference run's
exactly: the two curves are one curve, step after step (``weight_gap`` after the last step is 0, measured).

A third, control run trains with the reference again, from the initial weights nudged by one float32 ulp. It shows
what that exactness is worth: this training is chaotic, a difference of one rounding grows from step to step (the
runs' outputs drift apart two- to fivefold further per step with this model and the default learning rate,
measured) until a SimOTA assignment flips on a near-tie (within the first ten steps, measured), after which the
control run is another sample of the same training rather than the same curve.

Shape legend: B batch, A cells (all levels), N targets of a batch.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..assignment import Assignment
from ..config import COMPONENT_NAMES, MODES, LossConfig
from ..grid import flatten_levels
from ..parity.comparison import tie_explained_cells
from ..reference import reference_for
from ..scenarios import in_box_format
from ..static import StaticYoloXLoss
from .data import DataSpec, Dataset, batch_order, make_dataset
from .model import STRIDES, build_model

SIDES = ("reference", "static")
#: Progress callback: (mode, steps done, steps in all).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoSettings:
    """Everything that determines a demo run (besides the modes): data, model, optimiser, seed."""

    steps: int = 150
    batch_size: int = 8
    image_size: int = 128
    num_classes: int = 3
    dataset_size: int = 256
    seed: int = 0
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 32
    use_l1: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "image_size", "num_classes", "dataset_size", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.image_size % STRIDES[-1]:
            raise ValueError(f"image_size must be divisible by {STRIDES[-1]}, got {self.image_size}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {self.seed!r}")
        for name, low in (("lr", "> 0"), ("momentum", ">= 0"), ("weight_decay", ">= 0")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and (value > 0 if low == "> 0" else value >= 0)):
                raise ValueError(f"{name} must be a finite number {low}, got {value!r}")
        if self.batch_size > self.dataset_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed dataset_size ({self.dataset_size})")
        self.data_spec  # noqa: B018 (DataSpec validates the data set's parameters)

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(image_size=self.image_size, num_classes=self.num_classes,
                        max_side=min(48, self.image_size - 2), min_side=min(12, self.image_size - 2))

    def loss_config(self, mode: str) -> LossConfig:
        """The loss configuration of ``mode`` on ``STRIDES``, shared by a mode's reference and static losses."""
        return LossConfig(STRIDES, self.num_classes, mode=mode, use_l1=self.use_l1)


@dataclass
class Curve:
    """One side of one mode: components [steps][6] (``COMPONENT_NAMES``), wall times in ms of each whole step and of
    its loss call (forward: assignment and loss terms)."""

    components: list[list[float]] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    loss_ms: list[float] = field(default_factory=list)

    @property
    def total(self) -> list[float]:
        return [c[COMPONENT_NAMES.index("Loss")] for c in self.components]

    def component(self, name: str) -> list[float]:
        return [c[COMPONENT_NAMES.index(name)] for c in self.components]

    @property
    def median_step_ms(self) -> float:
        return median(self.step_ms)

    @property
    def median_loss_ms(self) -> float:
        return median(self.loss_ms)


def median(values: Sequence[float]) -> float:
    """Median (the mean of the two middle values for an even count); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass
class FirstDifference:
    """The first step whose assignments differ, and why.

    ``same_input_*``: cells where the static module's answer on the reference run's predictions differs from the
    reference's, and how many of them a tie explains. ``cross_run_*``: the same for the two runs' own answers (each
    on its own predictions), a cell counting as explained when it is a tie under either run's predictions.
    ``prediction_drift``: max |static run's outputs - reference run's| / max |reference run's| at that step.
    """

    step: int
    same_input_cells: int
    same_input_explained: int
    cross_run_cells: int
    cross_run_explained: int
    prediction_drift: float

    @property
    def cause(self) -> str:
        """"tie" (every differing cell is a float32 tie), "drift" (the static module agrees with the reference on the
        same predictions, up to ties, but the runs' predictions have drifted apart past a tie's width) or "real"
        (a difference on identical inputs that no tie explains: a bug)."""
        if self.same_input_explained < self.same_input_cells:
            return "real"
        return "tie" if self.cross_run_explained == self.cross_run_cells else "drift"

    @property
    def tie_explained(self) -> bool:
        return self.cause == "tie"


@dataclass
class ModeRun:
    """Both sides, the control run and the same-input comparison of one mode; per step whether the assignments
    differ (on the same input or between the runs), and the first step where they do."""

    mode: str
    reference: Curve
    static: Curve
    control: Curve
    same_input: "SameInput"
    differs: list[bool]
    first_difference: FirstDifference | None
    #: First step whose control-run assignment differs from the reference run's (None: never).
    control_first_difference: int | None = None
    #: After the last step, max |w - w_reference| over every parameter and buffer of the static run's model, and of
    #: the control run's.
    weight_gap: float = 0.0
    control_weight_gap: float = 0.0


@dataclass
class DemoResult:
    settings: DemoSettings
    runs: dict[str, ModeRun]
    targets_per_batch: list[int]
    seconds: float


def differing_cells(a: Assignment, b: Assignment) -> Tensor:
    """bool [B, A]: cells that one answer matches and the other not, or that they match to different targets."""
    return (a.fg_mask != b.fg_mask) | (a.fg_mask & b.fg_mask & (a.matched_gt != b.matched_gt))


def prediction_drift(reference: Sequence[Tensor], static: Sequence[Tensor]) -> float:
    """max |static - reference| / max |reference| over all head outputs of both runs (per-level lists)."""
    ref, sub = flatten_levels(reference), flatten_levels(static)
    return float((sub - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


class DivergedError(ArithmeticError):
    """A training run whose model outputs or loss stopped being finite (too large a learning rate)."""

    def __init__(self, run: str, step: int, what: str, lr: float):
        super().__init__(f"the {run} run diverged at step {step}: {what} not finite (lr {lr:g}); a smaller lr "
                         "keeps it finite")
        self.run, self.step, self.what, self.lr = run, step, what, lr


def check_finite(outputs: Sequence[Tensor] | Tensor, run: str, step: int, what: str, lr: float) -> None:
    """:class:`DivergedError` when ``outputs`` (a tensor or a sequence of tensors) hold a non-finite value."""
    tensors = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if not all(bool(torch.isfinite(t.detach()).all()) for t in tensors):
        raise DivergedError(run, step, what, lr)


@dataclass
class StepOutput:
    outputs: list[Tensor]
    components: Tensor
    assignment: Assignment
    ms: float


class Side:
    """One training run: a model, its optimiser and its loss."""

    def __init__(self, model: nn.Module, loss: nn.Module, settings: DemoSettings, name: str = "training"):
        self.model, self.loss, self.name, self.lr = model, loss, name, settings.lr
        self.optimiser = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                         weight_decay=settings.weight_decay)
        self.curve = Curve()

    def step(self, images: Tensor, targets: Tensor) -> StepOutput:
        start = time.perf_counter()
        self.optimiser.zero_grad(set_to_none=True)
        outputs = self.model(images)
        check_finite(outputs, self.name, len(self.curve.step_ms), "the model's outputs are", self.lr)
        loss_start = time.perf_counter()
        loss, components, assignment = self.loss.loss_and_assignment(outputs, targets)
        loss_ms = 1000 * (time.perf_counter() - loss_start)
        check_finite(loss, self.name, len(self.curve.step_ms), "the loss is", self.lr)
        loss.backward()
        self.optimiser.step()
        ms = 1000 * (time.perf_counter() - start)
        self.curve.components.append([float(c) for c in components])
        self.curve.step_ms.append(ms)
        self.curve.loss_ms.append(loss_ms)
        return StepOutput([o.detach() for o in outputs], components, assignment, ms)


def nudged(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every floating-point parameter moved one float32 ulp towards +inf."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for p in copied.parameters():
            p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    return copied


@dataclass
class SameInput:
    """The static module on the reference run's own predictions, step by step: its components [steps][6], and the
    cells where its assignment differs from the reference's, and how many of those a tie explains."""

    components: list[list[float]] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)
    explained: list[int] = field(default_factory=list)

    def record(self, static_loss: StaticYoloXLoss, reference: StepOutput, targets: Tensor) -> Tensor:
        """Evaluate and record one step; return the differing cells bool [B, A]."""
        with torch.no_grad():
            _, components, assignment = static_loss.loss_and_assignment(reference.outputs, targets)
        cells = differing_cells(reference.assignment, assignment)
        self.components.append([float(c) for c in components])
        self.cells.append(int(cells.sum()))
        explained = tie_explained_cells(cells, reference.outputs, targets, static_loss.config)
        self.explained.append(int(explained.sum()))
        return cells


def run_mode(mode: str, settings: DemoSettings, data: Dataset, batches: Sequence[Tensor], initial: nn.Module,
             progress: Progress | None = None) -> ModeRun:
    """Train deep copies of ``initial`` on ``batches``: one with each loss of ``mode``, step by step in turn (which
    side goes first alternates, so that machine noise falls on both), and the control run."""
    config = settings.loss_config(mode)
    static_loss = StaticYoloXLoss.from_config(config)
    sides = {"reference": Side(copy.deepcopy(initial), reference_for(config), settings, f"{mode} reference"),
             "static": Side(copy.deepcopy(initial), static_loss, settings, f"{mode} static")}
    control = Side(nudged(initial), reference_for(config), settings, f"{mode} control")
    same_input = SameInput()
    differs: list[bool] = []
    first: FirstDifference | None = None
    control_first: int | None = None
    for step, indices in enumerate(batches):
        images, targets = data.batch(indices)
        targets = in_box_format(targets, config.box_format.name)  # the mode's box format (corners for mmdet)
        order = SIDES if step % 2 == 0 else SIDES[::-1]
        out = {name: sides[name].step(images, targets) for name in order}
        nudged_out = control.step(images, targets)
        ref, sub = out["reference"], out["static"]
        if control_first is None and bool(differing_cells(ref.assignment, nudged_out.assignment).any()):
            control_first = step
        same_cells = same_input.record(static_loss, ref, targets)
        cross_run = differing_cells(ref.assignment, sub.assignment)
        differs.append(bool(same_cells.any() or cross_run.any()))
        if differs[-1] and first is None:
            first = analyse_difference(step, same_cells, cross_run, ref.outputs, sub.outputs, targets,
                                       static_loss.config)
        if progress is not None:
            progress(mode, step + 1, len(batches))
    reference_model = sides["reference"].model
    return ModeRun(mode, sides["reference"].curve, sides["static"].curve, control.curve, same_input, differs, first,
                   control_first, weight_gap(reference_model, sides["static"].model),
                   weight_gap(reference_model, control.model))


def weight_gap(reference: nn.Module, other: nn.Module) -> float:
    """max |w_other - w_reference| over every floating-point parameter and buffer (BatchNorm statistics too)."""
    pairs = zip((*reference.parameters(), *reference.buffers()), (*other.parameters(), *other.buffers()))
    return max((float((b.detach() - a.detach()).abs().max()) for a, b in pairs if a.is_floating_point()), default=0.0)


def analyse_difference(step: int, same_input: Tensor, cross_run: Tensor, reference_outputs: Sequence[Tensor],
                       static_outputs: Sequence[Tensor], targets: Tensor, config: LossConfig) -> FirstDifference:
    """``FirstDifference`` of a step from its differing cells bool [B, A] and both runs' outputs."""
    ties_ref = tie_explained_cells(same_input | cross_run, reference_outputs, targets, config)
    ties_either = ties_ref | tie_explained_cells(cross_run, static_outputs, targets, config)
    return FirstDifference(step, int(same_input.sum()), int((same_input & ties_ref).sum()), int(cross_run.sum()),
                           int((cross_run & ties_either).sum()), prediction_drift(reference_outputs, static_outputs))


def shared_inputs(settings: DemoSettings, modes: Sequence[str] | None
                  ) -> tuple[tuple[str, ...], Dataset, list[Tensor], nn.Module]:
    """What every mode of a run shares: the checked ``modes`` (default: all of ``config.MODES``; ValueError for an
    unknown one or none), the data set, the batch order and the initial model."""
    modes = tuple(MODES if modes is None else modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty selection of {MODES}, got {list(modes)}")
    data = make_dataset(settings.data_spec, settings.dataset_size, settings.seed)
    batches = batch_order(settings.dataset_size, settings.batch_size, settings.steps, settings.seed)
    return modes, data, batches, build_model(settings.num_classes, settings.seed, width=settings.width)


def run_demo(settings: DemoSettings = DemoSettings(), modes: Sequence[str] | None = None,
             progress: Progress | None = None) -> DemoResult:
    """Every mode in ``modes`` (default: all of ``config.MODES``) on one data set, batch order and initial model."""
    start = time.perf_counter()
    modes, data, batches, initial = shared_inputs(settings, modes)
    runs = {mode: run_mode(mode, settings, data, batches, initial, progress) for mode in modes}
    counts = [sum(len(data.targets[i]) for i in b.tolist()) for b in batches]
    return DemoResult(settings, runs, counts, time.perf_counter() - start)
