"""Training from the exported graph: each step's loss and d loss / d predictions come from the gradient graph
(``export --with-grad``) under onnxruntime, and its ``predictions_grad`` is fed to the detector head's backward.

Per mode, two runs from one initial model, on the same batches in the same order with the same optimiser (the
settings of ``train.DemoSettings``):

1. eager: the mode's reference loss, autograd;
2. graph: the model's outputs flattened into the graph's feeds (``contract.graph_feeds``), the graph run under
   onnxruntime, and ``flatten_levels(outputs).backward(predictions_grad)``: autograd never sees the loss.

At every step the graph also runs on the eager run's own predictions (same inputs) and the demo records how far
its loss and gradient are from eager autograd there: |loss gap| / |loss|, and max |gradient gap| / max |gradient|
(the parity layer's unit), with the cells where the two assignments differ and how many a tie explains
(``parity.ties``). Those same-input gaps are what holds at every step: float32 rounding (the graph sums the loss
terms in another order than the references' layout). The two runs' own curves drift apart: this training is
chaotic (``train``'s control run: a 1-ulp nudge of the initial weights moves the curve), so a gap of one rounding
grows from step to step; the curves are drawn side by side, not expected to coincide.

Shape legend: B batch, A cells (all levels), C classes, N targets of a batch.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..config import COMPONENT_NAMES
from ..export.contract import GRAD_OUTPUT_NAMES, graph_feeds
from ..grid import flatten_levels
from ..parity.comparison import RUNTIME_ULPS, TOLERANCES, tie_explained_cells
from ..reference import reference_for
from ..scenarios import in_box_format
from .data import Dataset
from .model import STRIDES
from .train import Curve, DemoSettings, Progress, check_finite, differing_cells, shared_inputs, weight_gap

_LOSS = COMPONENT_NAMES.index("Loss")
#: Largest same-input gaps that count as float32 rounding: the parity layer's tolerances (loss relative; gradient
#: relative to the largest |gradient|).
LOSS_TOLERANCE = TOLERANCES["components"]
GRAD_TOLERANCE = TOLERANCES["gradients"]


@dataclass
class GraphRun:
    """One mode: the eager and graph runs' curves, and per step the graph's gaps from eager autograd on the eager
    run's own predictions (``loss_gap``, ``grad_gap``), the cells where the assignments differ there and how many a
    tie explains; after the last step max |w_graph - w_eager| over every parameter and buffer."""

    mode: str
    eager: Curve
    graph: Curve
    loss_gap: list[float] = field(default_factory=list)
    grad_gap: list[float] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)
    explained: list[int] = field(default_factory=list)
    weight_gap: float = 0.0

    @property
    def compared_steps(self) -> list[int]:
        """Steps whose same-input assignments agree cell for cell (the gaps are compared there)."""
        return [step for step, cells in enumerate(self.cells) if cells == 0]

    @property
    def within_rounding(self) -> bool:
        """Every compared step's gaps within the tolerances, and every differing cell explained by a tie."""
        steps = self.compared_steps
        return (all(self.loss_gap[s] <= LOSS_TOLERANCE and self.grad_gap[s] <= GRAD_TOLERANCE for s in steps)
                and self.cells == self.explained)


@dataclass
class GraphDemoResult:
    settings: DemoSettings
    runs: dict[str, GraphRun]
    onnx_paths: dict[str, str]
    export_seconds: dict[str, float]
    seconds: float


def graph_preset(settings: DemoSettings, mode: str):
    """The export preset of the demo's gradient graph for ``mode``."""
    from ..export.presets import Preset

    size = settings.image_size
    return Preset(name=f"train_graph_{mode}", image_size=(size, size), strides=STRIDES,
                  num_classes=settings.num_classes, mode=mode, batch=(1, settings.batch_size, settings.batch_size),
                  max_gt=(1, 8, 64), opset=20, with_grad=True)


def export_graph(settings: DemoSettings, mode: str, directory: str | Path) -> Path:
    """Export the gradient graph of ``mode`` for the demo's settings into ``directory``."""
    from ..export.onnx_export import export_onnx, quiet_exporter

    preset = graph_preset(settings, mode)
    with quiet_exporter():
        return export_onnx(preset, Path(directory) / f"{preset.name}.onnx", config=settings.loss_config(mode))


def _optimiser(model: nn.Module, settings: DemoSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                           weight_decay=settings.weight_decay)


def _record(curve: Curve, components: Tensor, start: float, loss_start: float, loss_end: float) -> None:
    curve.components.append([float(c) for c in components])
    curve.step_ms.append(1000 * (time.perf_counter() - start))
    curve.loss_ms.append(1000 * (loss_end - loss_start))


def gradient_gaps(graph: Mapping[str, Tensor], loss: Tensor, grad: Tensor) -> tuple[float, float]:
    """(|graph loss - loss| / |loss|, max |graph gradient - grad| / max |grad|) for the graph's outputs
    ``graph`` and eager autograd's ``loss`` and ``grad`` [B, A, 5 + C] on the same inputs."""
    graph_loss = float(graph["loss_components"][_LOSS])
    loss_gap = abs(graph_loss - float(loss)) / max(abs(float(loss)), 1e-30)
    scale = float(grad.abs().max()) if grad.numel() else 0.0
    difference = float((graph[GRAD_OUTPUT_NAMES[0]] - grad).abs().max()) if grad.numel() else 0.0
    return loss_gap, difference / max(scale, 1e-30) if difference else 0.0


def run_graph_mode(mode: str, settings: DemoSettings, data: Dataset, batches: Sequence[Tensor], initial: nn.Module,
                   onnx_path: str | Path, progress: Progress | None = None) -> GraphRun:
    """Train deep copies of ``initial`` with the eager reference and with the gradient graph at ``onnx_path``."""
    from ..export.runners import open_runner

    runner = open_runner("onnxruntime", onnx_path, providers=["CPUExecutionProvider"])
    config = settings.loss_config(mode)
    reference = reference_for(config)
    eager_model, graph_model = copy.deepcopy(initial), copy.deepcopy(initial)
    eager_opt, graph_opt = _optimiser(eager_model, settings), _optimiser(graph_model, settings)
    run = GraphRun(mode, Curve(), Curve())
    for step, indices in enumerate(batches):
        images, targets = data.batch(indices)
        targets = in_box_format(targets, config.box_format.name)  # the mode's box format (corners for mmdet)

        start = time.perf_counter()  # eager: the reference loss, autograd to the outputs, then to the weights
        eager_opt.zero_grad(set_to_none=True)
        outputs = eager_model(images)  # per level [B, 1, H, W, 5 + C]
        check_finite(outputs, f"{mode} eager", step, "the model's outputs are", settings.lr)
        loss_start = time.perf_counter()
        loss, components, assignment = reference.loss_and_assignment(outputs, targets)
        check_finite(loss, f"{mode} eager", step, "the loss is", settings.lr)
        grads = torch.autograd.grad(loss, outputs, retain_graph=True)
        loss_end = time.perf_counter()
        torch.autograd.backward(outputs, grads)
        eager_opt.step()
        _record(run.eager, components, start, loss_start, loss_end)

        detached = [o.detach() for o in outputs]  # the graph on the eager run's own predictions
        same = runner.run(graph_feeds(detached, targets, box_format=config.box_format))
        loss_gap, grad_gap = gradient_gaps(same, loss.detach(), flatten_levels(list(grads)))
        cells = differing_cells(assignment, _assignment(same))
        run.loss_gap.append(loss_gap)
        run.grad_gap.append(grad_gap)
        run.cells.append(int(cells.sum()))
        explained = tie_explained_cells(cells, detached, targets, config, RUNTIME_ULPS["onnxruntime"])
        run.explained.append(int(explained.sum()))

        start = time.perf_counter()  # graph: loss and gradient from onnxruntime, fed to the head's backward
        graph_opt.zero_grad(set_to_none=True)
        outputs = graph_model(images)
        check_finite(outputs, f"{mode} graph", step, "the model's outputs are", settings.lr)
        loss_start = time.perf_counter()
        out = runner.run(graph_feeds([o.detach() for o in outputs], targets, box_format=config.box_format))
        loss_end = time.perf_counter()
        flatten_levels(outputs).backward(out[GRAD_OUTPUT_NAMES[0]])  # [B, A, 5 + C]
        graph_opt.step()
        _record(run.graph, out["loss_components"], start, loss_start, loss_end)
        if progress is not None:
            progress(mode, step + 1, len(batches))
    run.weight_gap = weight_gap(eager_model, graph_model)
    return run


def _assignment(outputs: Mapping[str, Tensor]):
    from ..assignment import Assignment

    return Assignment(outputs["fg_mask"], outputs["matched_gt"], outputs["matched_iou"])


def run_graph_demo(settings: DemoSettings = DemoSettings(), modes: Sequence[str] | None = None,
                   onnx_paths: Mapping[str, str | Path] | None = None, export_dir: str | Path | None = None,
                   progress: Progress | None = None) -> GraphDemoResult:
    """Every mode of ``modes`` (default: all of ``config.MODES``) on one data set, batch order and initial model.
    ``onnx_paths`` gives a mode's gradient graph (exported for these settings); the others are exported into
    ``export_dir`` (a temporary folder, removed at the end, when None)."""
    start = time.perf_counter()
    modes, data, batches, initial = shared_inputs(settings, modes)
    paths = {mode: str(path) for mode, path in (onnx_paths or {}).items()}
    export_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="yolox_train_graph_") as tmp:
        runs = {}
        for mode in modes:
            if mode not in paths:
                exported = time.perf_counter()
                paths[mode] = str(export_graph(settings, mode, export_dir or tmp))
                export_seconds[mode] = time.perf_counter() - exported
            runs[mode] = run_graph_mode(mode, settings, data, batches, initial, paths[mode], progress)
    return GraphDemoResult(settings, runs, {m: paths[m] for m in modes}, export_seconds,
                           time.perf_counter() - start)
