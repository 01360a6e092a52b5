"""Parity layer: run subjects (the static module eager, an exported ONNX graph under onnxruntime, a TensorRT engine)
against the eager reference of the same mode on the same batches, and report what agrees, what differs, and why.

Every assignment difference is classified by ``ties``: explained by a tie in the reference's own answer, or a real
mismatch. Loss components and gradients are compared on batches whose assignments agree cell for cell (on a batch
with a tie-explained difference the losses legitimately differ, and the report counts such batches).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .assignment import Assignment
from .config import LossConfig
from .grid import flatten_levels, level_shapes, make_grid
from .reference import FastYoloXLoss, MegviiYoloXLoss, RegularYoloXLoss
from .static import StaticYoloXLoss
from .targets import pad_targets
from .ties import image_ties

COMPONENTS = ("iou", "obj", "cls", "l1", "num_fg", "loss")
SUBJECTS = ("static", "onnxruntime", "tensorrt")
#: Default tolerances: matched IoU absolute; loss components relative; gradients relative to the largest |grad|.
TOLERANCES = {"matched_iou": 1e-5, "components": 1e-5, "gradients": 1e-4}
#: Float32 ulps by which a runtime's sigmoid / exp may differ from torch's (the static module in eager torch: 0).
RUNTIME_ULPS = {"onnxruntime": 2, "tensorrt": 2}


@dataclass
class Row:
    """One output of one subject: element counts, exact matches, largest differences, tolerance, verdict."""

    subject: str
    output: str
    count: int = 0
    exact: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    tolerance: float = 0.0
    explained: int = 0
    real: int = 0

    @property
    def needed(self) -> float:
        """Tolerance this output would have needed (the measured difference in the tolerance's own unit)."""
        return self.max_abs if self.output == "matched_iou" else self.max_rel

    @property
    def passed(self) -> bool:
        return self.real == 0 and self.needed <= self.tolerance


@dataclass
class Difference:
    """One cell whose assignment differs: where, what each side said, and the verdict."""

    subject: str
    batch: int
    image: int
    cell: int
    reference_gt: int
    subject_gt: int
    explained: bool


@dataclass
class ParityReport:
    mode: str
    batches: int = 0
    rows: list[Row] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    tie_batches: dict[str, int] = field(default_factory=dict)

    def row(self, subject: str, output: str, tolerance: float = 0.0) -> Row:
        for r in self.rows:
            if r.subject == subject and r.output == output:
                return r
        self.rows.append(Row(subject, output, tolerance=tolerance))
        return self.rows[-1]

    def __bool__(self) -> bool:
        return all(r.passed for r in self.rows)

    def __str__(self) -> str:
        head = f"parity ({self.mode} mode, {self.batches} batches)"
        lines = [head, f"{'subject':<12} {'output':<14} {'exact':>16} {'explained':>9} {'real':>5} "
                       f"{'max abs':>10} {'max rel':>10} {'tol':>8} {'needed':>10}  verdict"]
        for r in self.rows:
            lines.append(
                f"{r.subject:<12} {r.output:<14} {f'{r.exact}/{r.count}':>16} {r.explained:>9} {r.real:>5} "
                f"{r.max_abs:>10.3g} {r.max_rel:>10.3g} {r.tolerance:>8.0e} {r.needed:>10.3g}  {'ok' if r.passed else 'FAIL'}"
            )
        for subject, n in self.tie_batches.items():
            lines.append(f"{subject}: {n} batch(es) with tie-explained differences; their losses were not compared")
        lines.append("PASS" if self else "FAIL")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "batches": self.batches, "passed": bool(self),
                "rows": [asdict(r) | {"needed": r.needed, "passed": r.passed} for r in self.rows],
                "differences": [asdict(d) for d in self.differences], "tie_batches": dict(self.tie_batches)}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "ParityReport":
        rows = [Row(**{k: v for k, v in r.items() if k not in ("needed", "passed")}) for r in data["rows"]]
        return cls(data["mode"], data["batches"], rows, [Difference(**d) for d in data["differences"]],
                   dict(data["tie_batches"]))

    @classmethod
    def from_json(cls, text: str) -> "ParityReport":
        return cls.from_dict(json.loads(text))


def reference_for(config: LossConfig):
    """The eager reference loss of ``config.mode``."""
    if config.mode == "megvii":
        return MegviiYoloXLoss(config.strides, config.num_classes, use_l1=config.use_l1)
    common = dict(strides=config.strides, num_classes=config.num_classes, use_l1=config.use_l1,
                  center_sampling_radius=config.center_sampling_radius, iou_type=config.iou_type)
    if config.mode == "regular":
        return RegularYoloXLoss(**common)
    return FastYoloXLoss(**common, dynamic_ks_bias=config.dynamic_ks_bias, sync_num_fgs=config.sync_num_fgs,
                         obj_loss_fix=config.obj_loss_fix)


def static_for(config: LossConfig) -> StaticYoloXLoss:
    return StaticYoloXLoss(config.strides, config.num_classes, mode=config.mode, use_l1=config.use_l1,
                           center_sampling_radius=config.center_sampling_radius, iou_type=config.iou_type,
                           dynamic_ks_bias=config.dynamic_ks_bias, obj_loss_fix=config.obj_loss_fix,
                           sync_num_fgs=config.sync_num_fgs)


@dataclass
class Outcome:
    """What one implementation produced for a batch."""

    assignment: Assignment
    components: Tensor | None = None
    gradients: list[Tensor] | None = None


def eager_outcome(loss_module, predictions: Sequence[Tensor], targets: Tensor, gradients: bool) -> Outcome:
    leaves = [p.detach().clone().requires_grad_(gradients) for p in predictions]
    loss, components, assignment = loss_module.loss_and_assignment(leaves, targets)
    grads = list(torch.autograd.grad(loss, leaves)) if gradients else None
    return Outcome(assignment, components, grads)


def runtime_outcome(runner, predictions: Sequence[Tensor], targets: Tensor) -> Outcome:
    """An exported graph's outcome through a runner with ``run(feeds) -> dict`` (onnxruntime or TensorRT)."""
    raw = flatten_levels([p.detach() for p in predictions]).float()
    gt, mask = pad_targets(targets, raw.shape[0])
    if gt.shape[1] < 2:  # exported graphs are traced with G >= 2; pad with masked slots
        gt = torch.cat((gt, gt.new_zeros((gt.shape[0], 2 - gt.shape[1], 5))), 1)
        mask = torch.cat((mask, mask.new_zeros((mask.shape[0], 2 - mask.shape[1]))), 1)
    out = runner.run({"predictions": raw, "targets": gt, "target_mask": mask})
    as_tensor = lambda x: torch.as_tensor(x).cpu()  # noqa: E731
    assignment = Assignment(as_tensor(out["fg_mask"]).bool(), as_tensor(out["matched_gt"]).long(),
                            as_tensor(out["matched_iou"]).float())
    return Outcome(assignment, as_tensor(out["loss_components"]).float())


def compare(batches: Iterable, config: LossConfig, subjects: Sequence[str] = ("static",), onnx_path=None,
            engine_path=None, gradients: bool = True, tolerances: dict | None = None,
            static_module: StaticYoloXLoss | None = None) -> ParityReport:
    """Compare ``subjects`` with the reference of ``config.mode`` on ``batches``.

    ``batches`` yields (predictions, targets) pairs or ``scenarios.Scenario`` objects: predictions a per-level list
    [B, 1, H, W, 5 + C], targets [N, 6]. "onnxruntime" needs ``onnx_path``; "tensorrt" needs ``engine_path``.
    ``static_module`` replaces the "static" subject's module (default: one built from ``config``).
    """
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        raise ValueError(f"unknown parity subjects {unknown}; choose from {SUBJECTS}")
    tol = {**TOLERANCES, **(tolerances or {})}
    runners = _runners(subjects, onnx_path, engine_path)
    reference = reference_for(config)
    static = static_module if static_module is not None else static_for(config)
    report = ParityReport(config.mode)
    for index, batch in enumerate(batches):
        predictions, targets = (batch.predictions, batch.targets) if hasattr(batch, "predictions") else batch
        expected = eager_outcome(reference, predictions, targets, gradients)
        for subject in subjects:
            if subject == "static":
                got = eager_outcome(static, predictions, targets, gradients)
            else:
                got = runtime_outcome(runners[subject], predictions, targets)
            _record(report, subject, index, predictions, targets, config, expected, got, tol)
        report.batches += 1
    return report


def _runners(subjects: Sequence[str], onnx_path, engine_path) -> dict:
    runners = {}
    if "onnxruntime" in subjects:
        if onnx_path is None:
            raise ValueError("subject 'onnxruntime' needs onnx_path")
        from .export.ort_runtime import OrtRunner

        runners["onnxruntime"] = OrtRunner(onnx_path)
    if "tensorrt" in subjects:
        if engine_path is None:
            raise ValueError("subject 'tensorrt' needs engine_path")
        from .export.tensorrt import TensorRTRunner

        runners["tensorrt"] = TensorRTRunner(engine_path)
    return runners


def _record(report: ParityReport, subject: str, index: int, predictions, targets: Tensor, config: LossConfig,
            expected: Outcome, got: Outcome, tol: dict) -> None:
    ref, sub = expected.assignment, got.assignment
    differs = (ref.fg_mask != sub.fg_mask) | (ref.fg_mask & sub.fg_mask & (ref.matched_gt != sub.matched_gt))  # [B, A]
    explained = _explained_cells(differs, predictions, targets, config, RUNTIME_ULPS.get(subject, 0))
    for name, equal in (("fg_mask", ref.fg_mask == sub.fg_mask), ("matched_gt", ref.matched_gt == sub.matched_gt)):
        row = report.row(subject, name)
        row.count += equal.numel()
        row.exact += int(equal.sum())
        row.explained += int((differs & explained).sum())
        row.real += int((differs & ~explained).sum())
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


def _explained_cells(differs: Tensor, predictions, targets: Tensor, config: LossConfig, input_ulps: int = 0) -> Tensor:
    explained = torch.zeros_like(differs)
    images = differs.any(1).nonzero().flatten().tolist()
    if not images:
        return explained
    raw = flatten_levels([p.detach() for p in predictions])
    grid = make_grid(level_shapes(predictions), config.strides, device=raw.device)
    gt, mask = pad_targets(targets, raw.shape[0])
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
