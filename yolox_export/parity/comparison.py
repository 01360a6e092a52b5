"""Parity: run subjects against the eager reference of the same mode on the same batches, and report what agrees,
what differs, and why. Subjects: the drop-in static module eager ("static": ragged targets, with gradients, beside
the runner protocol), and the padded graph's forward through a runner of ``export.runners`` opened with
``open_runner`` (:class:`SubjectRunners`): torch.compile ("compiled"), the exported graph under onnxruntime, a
TensorRT engine.

Every assignment difference is classified by ``ties``: explained by a tie in the reference's own answer, or a real
mismatch. Loss components and gradients are compared on batches whose assignments agree cell for cell (on a batch
with a tie-explained difference the losses legitimately differ, and the report counts such batches).
Shape legend: B batch, A cells, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from ..assignment import Assignment
from ..box_format import CENTRE_SIZE, BoxFormat
from ..config import COMPONENT_NAMES, LossConfig
from ..export.contract import GRAD_OUTPUT_NAMES, graph_feeds
from ..export.runners import open_runner
from ..grid import flatten_levels, level_shapes, make_grid, unflatten_levels
from ..reference import reference_for
from ..static import StaticYoloXLoss
from ..targets import pad_targets
from .audit import fields_of, graph_fields, record_audit
from .report import Difference, ParityReport, Row
from .ties import image_ties

#: Report rows of the loss components (``COMPONENT_NAMES``, lower case).
COMPONENTS = tuple(name.lower() for name in COMPONENT_NAMES)
SUBJECTS = ("static", "compiled", "onnxruntime", "tensorrt")
#: Subjects whose runner opens a file, and the argument of :func:`compare` that names it.
FILE_SUBJECTS = {"onnxruntime": "onnx_path", "tensorrt": "engine_path"}
#: Default tolerances: matched IoU absolute; loss components relative; gradients relative to the largest |grad|.
TOLERANCES = {"matched_iou": 1e-5, "components": 1e-5, "gradients": 1e-4}
#: Float32 ulps by which a runtime's sigmoid / exp may differ from torch's (the static module in eager torch: 0).
RUNTIME_ULPS = {"compiled": 2, "onnxruntime": 2, "tensorrt": 2}


def static_for(config: LossConfig) -> StaticYoloXLoss:
    """The static module parity compares for ``config`` (the one place it is built)."""
    return StaticYoloXLoss.from_config(config)


@dataclass
class Outcome:
    """What one implementation produced for a batch."""

    assignment: Assignment
    components: Tensor | None = None
    gradients: list[Tensor] | None = None
    audit: object = None  #: the reference's ``TargetAudit``; a subject's {audit field: int64 [N]} (``parity.audit``)


def eager_outcome(loss_module, predictions: Sequence[Tensor], targets: Tensor, gradients: bool,
                  audit: bool = False) -> Outcome:
    """An eager module's outcome; with ``audit`` also a reference's audit from the same assignment
    (``loss_assignment_and_audit``) or the static module's (its ``audit``)."""
    leaves = [p.detach().clone().requires_grad_(gradients) for p in predictions]
    found = None
    if audit and hasattr(loss_module, "loss_assignment_and_audit"):
        loss, components, assignment, found = loss_module.loss_assignment_and_audit(leaves, targets)
    else:
        loss, components, assignment = loss_module.loss_and_assignment(leaves, targets)
        if audit:
            found = fields_of(loss_module.audit(predictions, targets))
    grads = list(torch.autograd.grad(loss, leaves)) if gradients else None
    return Outcome(assignment, components, grads, found)


def runtime_outcome(runner, predictions: Sequence[Tensor], targets: Tensor,
                    box_format: BoxFormat = CENTRE_SIZE) -> Outcome:
    """The padded graph's outcome through a runner with ``run(feeds) -> dict`` (compiled, onnxruntime, TensorRT),
    on the feeds of per-level ``predictions`` and [N, 6] ``targets`` (on their device; boxes in ``box_format``,
    the graph's mode's). A graph exported with the gradient (``predictions_grad`` [B, A, 5 + C]) gives its
    gradients, split back into the levels' shapes."""
    out = runner.run(graph_feeds([p.detach() for p in predictions], targets, max_gt=fixed_max_gt(runner),
                                 box_format=box_format))
    as_tensor = lambda x: torch.as_tensor(x).cpu()  # noqa: E731
    assignment = Assignment(as_tensor(out["fg_mask"]).bool(), as_tensor(out["matched_gt"]).long(),
                            as_tensor(out["matched_iou"]).float())
    gradients = None
    if GRAD_OUTPUT_NAMES[0] in out:
        gradients = unflatten_levels(as_tensor(out[GRAD_OUTPUT_NAMES[0]]).float(), level_shapes(predictions))
    audit = graph_fields(out, targets.cpu(), int(predictions[0].shape[0]))
    return Outcome(assignment, as_tensor(out["loss_components"]).float(), gradients, audit)


def compare(batches: Iterable, config: LossConfig, subjects: Sequence[str] = ("static",), onnx_path=None,
            engine_path=None, gradients: bool = True, tolerances: dict | None = None,
            static_module: StaticYoloXLoss | None = None, runners: dict | SubjectRunners | None = None,
            progress: Callable[[str, int, int], None] | None = None, audit: bool = True) -> ParityReport:
    """Compare ``subjects`` with the reference of ``config.mode`` on ``batches``.

    ``batches`` yields (predictions, targets) pairs or ``scenarios.Scenario`` objects: predictions a per-level list
    [B, 1, H, W, 5 + C], targets [N, 6]. "onnxruntime" needs ``onnx_path``; "tensorrt" needs ``engine_path``;
    "compiled" needs nothing. ``static_module`` replaces the "static" subject's module (default: one built from
    ``config``); ``runners`` (subject -> runner with ``run(feeds) -> dict``) replaces the runners opened from the
    paths, e.g. an onnxruntime session on the CUDA execution provider; a :class:`SubjectRunners` is used as it is
    (and keeps what it opens, e.g. for the plots). ``progress(label, done, total)`` is called after each batch
    (label: the mode) when ``batches`` has a length. ``audit`` adds each subject's "audit" row: its per-target
    audit (the static module's ``audit``, an exported graph's ``target_k`` / ``target_cells``) against the
    reference's own (``parity.audit``).
    """
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        raise ValueError(f"unknown parity subjects {unknown}; choose from {SUBJECTS}")
    tol = {**TOLERANCES, **(tolerances or {})}
    if isinstance(runners, SubjectRunners):
        runner_for = runners.open(subjects)
    else:
        if runners is not None:
            missing = [s for s in subjects if s in FILE_SUBJECTS and s not in runners]
            if missing:
                raise ValueError(f"no runner for subject(s) {missing}")
        runner_for = SubjectRunners(config, onnx_path, engine_path, runners).open(subjects)
    reference = reference_for(config)
    static = static_module if static_module is not None else static_for(config)
    report = ParityReport(config.mode)
    total = len(batches) if hasattr(batches, "__len__") else None
    for index, batch in enumerate(batches):
        predictions, targets = (batch.predictions, batch.targets) if hasattr(batch, "predictions") else batch
        expected = eager_outcome(reference, predictions, targets, gradients, audit)
        for subject in subjects:
            if subject == "static":
                got = eager_outcome(static, predictions, targets, gradients, audit)
            else:
                got = runtime_outcome(runner_for(subject, predictions), predictions, targets, config.box_format)
            _record(report, subject, index, predictions, targets, config, expected, got, tol)
        report.batches += 1
        if progress is not None and total is not None:
            progress(config.mode, index + 1, total)
    return report


def fixed_max_gt(runner) -> int | None:
    """The G a runner's graph fixes (a chunked export: its ``targets`` input declares a number for axis 1), else
    None (G dynamic: the feeds are padded to the batch's largest count)."""
    for spec in getattr(runner, "input_specs", ()):
        if spec.name == "targets" and len(spec.shape) > 1 and isinstance(spec.shape[1], int):
            return spec.shape[1]
    return None


class SubjectRunners:
    """subject -> the runner of its padded forward, each opened once with ``runners.open_runner``: the ONNX file
    under onnxruntime, the TensorRT engine, and torch.compile of the padded module (B and G dynamic), one per levels'
    shapes and device since the module's grid fixes A. ``runners`` (subject -> runner) are used as given;
    ``compile_backend`` is torch.compile's backend for "compiled" (default inductor)."""

    def __init__(self, config: LossConfig, onnx_path=None, engine_path=None, runners: dict | None = None,
                 compile_backend="inductor"):
        self.config = config
        self.compile_backend = compile_backend
        self.paths = {"onnxruntime": onnx_path, "tensorrt": engine_path}
        self.runners: dict = dict(runners or {})

    def open(self, subjects: Sequence[str]) -> SubjectRunners:
        """Open the file-backed runners of ``subjects`` now, so that a missing or bad file fails before any
        comparison; ValueError for a subject without its file."""
        for subject in subjects:
            if subject in FILE_SUBJECTS and subject not in self.runners:
                if self.paths[subject] is None:
                    raise ValueError(f"subject {subject!r} needs {FILE_SUBJECTS[subject]}")
                self.runners[subject] = open_runner(subject, self.paths[subject])
        return self

    def __call__(self, subject: str, predictions: Sequence[Tensor]):
        """The runner of ``subject`` for per-level ``predictions`` [B, 1, H, W, 5 + C]."""
        if subject in self.runners:
            return self.runners[subject]
        if subject in FILE_SUBJECTS:
            return self.open([subject]).runners[subject]
        if subject != "compiled":
            raise ValueError(f"subject {subject!r} has no runner; runner subjects: {SUBJECTS[1:]}")
        shapes = tuple(level_shapes(predictions))
        key = (subject, shapes, str(predictions[0].device))
        if key not in self.runners:
            self.runners[key] = open_runner("compiled", config=self.config, shapes=shapes,
                                            device=predictions[0].device, compile_backend=self.compile_backend)
        return self.runners[key]


def _record(report: ParityReport, subject: str, index: int, predictions, targets: Tensor, config: LossConfig,
            expected: Outcome, got: Outcome, tol: dict) -> None:
    ref, sub = expected.assignment, got.assignment
    if expected.audit is not None and got.audit:
        record_audit(report, subject, predictions, targets, config, expected.audit, got.audit, ref, sub,
                     RUNTIME_ULPS.get(subject, 0))
    differs = (ref.fg_mask != sub.fg_mask) | (ref.fg_mask & sub.fg_mask & (ref.matched_gt != sub.matched_gt))  # [B, A]
    explained = tie_explained_cells(differs, predictions, targets, config, RUNTIME_ULPS.get(subject, 0))
    for name, equal in (("fg_mask", ref.fg_mask == sub.fg_mask), ("matched_gt", ref.matched_gt == sub.matched_gt)):
        row = report.row(subject, name)  # each row counts the cells where its own output differs
        row.count += equal.numel()
        row.exact += int(equal.sum())
        row.explained += int((~equal & explained).sum())
        row.real += int((~equal & ~explained).sum())
    for image, cell in differs.nonzero().tolist():
        report.differences.append(Difference(subject, index, image, cell, int(ref.matched_gt[image, cell]),
                                             int(sub.matched_gt[image, cell]), bool(explained[image, cell])))
    same = ref.fg_mask & sub.fg_mask & (ref.matched_gt == sub.matched_gt)
    _numeric(report.row(subject, "matched_iou", tol["matched_iou"]), ref.matched_iou[same], sub.matched_iou[same])
    if bool(differs.any()):
        report.tie_batches[subject] = report.tie_batches.get(subject, 0) + 1
        return
    for i, name in enumerate(COMPONENTS):
        _numeric(report.row(subject, name, tol["components"]), expected.components[i:i + 1], got.components[i:i + 1])
    if expected.gradients is not None and got.gradients is not None:
        row = report.row(subject, "gradients", tol["gradients"])
        for e, g in zip(expected.gradients, got.gradients):
            _numeric(row, e, g, scale=float(e.abs().max()) if e.numel() else 0.0)


def tie_explained_cells(differs: Tensor, predictions, targets: Tensor, config: LossConfig, input_ulps: int = 0
                        ) -> Tensor:
    """bool [B, A]: the cells of ``differs`` [B, A] whose assignment a tie in the reference's own answer leaves open
    (``ties.image_ties`` on every image with a differing cell), for per-level ``predictions`` and [N, 6] targets."""
    explained = torch.zeros_like(differs)
    images = differs.any(1).nonzero().flatten().tolist()
    if not images:
        return explained
    raw = flatten_levels([p.detach() for p in predictions])
    grid = make_grid(level_shapes(predictions), config.strides, device=raw.device)
    gt, mask = pad_targets(targets, raw.shape[0], box_format=config.box_format)
    for b in images:
        if bool(mask[b].any()):
            explained[b] = image_ties(raw[b], gt[b][mask[b]], grid, config, input_ulps).explained_cells
    return explained


def _numeric(row: Row, expected: Tensor, got: Tensor, scale: float | None = None) -> None:
    expected, got = expected.detach().double().flatten(), got.detach().double().flatten()
    row.count += expected.numel()
    if expected.numel() == 0:
        return
    diff = (expected - got).abs()
    row.exact += int((diff == 0).sum())
    row.max_abs = max(row.max_abs, float(diff.max()))
    denom = torch.full_like(diff, scale) if scale is not None else expected.abs()
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / denom.clamp(min=1e-30))
    row.max_rel = max(row.max_rel, float(rel.max()))
