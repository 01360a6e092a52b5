"""ONNX export of the padded assignment + loss graph (``PaddedYoloXLoss``) and its validation.

Inputs and outputs: see ``contract``. ``batch`` and ``max_gt`` are dynamic axes; the configuration is stored in
``metadata_props`` (:func:`metadata`; docs/export.md lists every key and its format).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from ..config import LossConfig, check_flag
from ..files import atomic_path, check_output
from ..static import PaddedYoloXLoss
from .contract import CONTRACT_VERSION, INPUT_NAMES, output_names
from .estimate import check_export_size, chunked_export_estimate
from .presets import BATCH_LIMIT, MAX_GT_LIMIT, Preset
from .trt_compat import check_tensorrt_compatibility, find_forbidden_ops


def preset_config(preset: Preset) -> LossConfig:
    return LossConfig(tuple(preset.strides), preset.num_classes, mode=preset.mode)


def level_shapes_for(preset: Preset) -> list[tuple[int, int]]:
    height, width = preset.image_size
    return [(height // s, width // s) for s in preset.strides]


def metadata(config: LossConfig, preset: Preset, with_targets: bool, with_grad: bool = False,
             with_audit: bool = True) -> dict[str, str]:
    from .. import __version__

    return {
        "yolox_export.version": __version__,
        "contract_version": str(CONTRACT_VERSION),
        "strides": ",".join(str(s) for s in config.strides),
        "num_classes": str(config.num_classes),
        "mode": config.mode,
        "box_format": config.box_format.name,
        "targets_row": config.box_format.row,
        "center_sampling_radius": repr(config.center_radius),
        "dynamic_ks_bias": repr(config.dynamic_ks_bias),
        "iou_type": config.iou_type,
        "use_l1": str(config.use_l1),
        "obj_loss_fix": str(config.obj_loss_fix),
        "image_size": f"{preset.image_size[0]}x{preset.image_size[1]}",
        "with_targets": str(with_targets),
        "with_grad": str(with_grad),
        "outputs": ",".join(output_names(with_targets, with_grad, with_audit)),
    }


def example_inputs(config: LossConfig, num_cells: int, batch: int = 2, max_gt: int = 3) -> tuple[torch.Tensor, ...]:
    """Tracing inputs; sizes >= 2 so the exporter keeps the axes symbolic."""
    gen = torch.Generator().manual_seed(0)
    predictions = torch.randn((batch, num_cells, 5 + config.num_classes), generator=gen)
    box = {"cxcywh": [64.0, 64.0, 32.0, 32.0], "xyxy": [48.0, 48.0, 80.0, 80.0]}[config.box_format.name]  # one box
    targets = torch.tensor([0.0, *box]).repeat(batch, max_gt, 1)
    mask = torch.ones((batch, max_gt), dtype=torch.bool)
    return predictions, targets, mask


@contextlib.contextmanager
def quiet_exporter():
    """Silence the exporter's own chatter (torch.onnx / torch.export / onnxscript logs, warnings and progress lines)
    for the duration of an export; problems with the graph are reported by ``validate_onnx``."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "torch._dynamo",
                                                      "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(preset: Preset, output: str | Path, with_targets: bool = False,
                config: LossConfig | None = None, targets_per_chunk: int | None = None,
                with_grad: bool | None = None, progress: Callable[[str, int, int], None] | None = None,
                allow_large_export: bool = False, with_audit: bool = True) -> Path:
    """Export the preset's graph to ``output`` and return its path (not yet validated: see ``validate_onnx``).

    The graph's batch and G axes are dynamic, and it assigns every target at once (torch.export refuses a loop over
    chunks of a dynamic G). With ``targets_per_chunk`` the preset's max_gt range must be one value (min = opt = max):
    G is then fixed in the graph and the assignment runs in chunks of that many targets, unrolled (the batch stays
    dynamic); its working set is [B, Gc, X] instead of [B, G, X].

    ``with_grad`` (None: the preset's ``with_grad``) adds the output ``predictions_grad`` [B, A, 5 + C], d loss /
    d predictions computed in the graph: the module's forward and backward are traced together first
    (``grad_graph.traced_with_grad``), then exported.

    ``output`` is checked first (``files.check_output``: a new file, or a graph this tool wrote; else
    ``files.OutputPathError``). ``progress(stage, done, total)`` reports each stage (:func:`stage`). An unrolled
    export of more than ``estimate.MAX_UNROLLED_CHUNKS`` chunks raises ValueError with its estimated time and size
    unless ``allow_large_export``. ``with_audit=False`` drops ``target_k`` / ``target_cells``: a graph outside the
    contract, for the benchmark's measure of what they cost (subject ``ort-cpu-noaudit``)."""
    check_output(output, "onnx")
    config = config or preset_config(preset)
    with_grad = preset.with_grad if with_grad is None else check_flag("with_grad", with_grad)
    check_flag("allow_large_export", allow_large_export)
    fixed_g = None
    if targets_per_chunk is not None:
        check_export_size(chunked_export_estimate(preset, targets_per_chunk), allow_large_export)
        fixed_g = preset.max_gt[0]
    module = PaddedYoloXLoss(config, level_shapes_for(preset), with_targets=with_targets,
                             targets_per_chunk=targets_per_chunk, with_grad=with_grad,
                             with_audit=check_flag("with_audit", with_audit)).eval()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(config, module.num_cells, max_gt=fixed_g or 3)
    with quiet_exporter():
        if with_grad:
            from .grad_graph import traced_with_grad

            target_axes = (0,) if fixed_g is not None else (0, 1)  # the axes exported_model keeps dynamic
            with stage(progress, "trace forward and backward"):
                module = traced_with_grad(module, inputs, [(0,), target_axes, target_axes])
        model = exported_model(module, inputs, output_names(with_targets, with_grad, with_audit), preset.opset,
                               fixed_max_gt=fixed_g is not None, progress=progress)
    meta = metadata(config, preset, with_targets, with_grad, with_audit)
    if fixed_g is not None:
        meta.update(max_gt=str(fixed_g), targets_per_chunk=str(targets_per_chunk))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with stage(progress, "save"), atomic_path(output) as temporary:  # never half a model at ``output``
        onnx.save(model, str(temporary))
    return output


Progress = Callable[[str, int, int], None]


@contextlib.contextmanager
def stage(progress: Progress | None, name: str):
    """Report the stage ``name`` through the progress callback: ``progress(name, 0, 1)`` as it starts and
    ``progress(name, 1, 1)`` when it has ended (not when it raised)."""
    if progress is not None:
        progress(name, 0, 1)
    yield
    if progress is not None:
        progress(name, 1, 1)


def exported_model(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output_names: tuple[str, ...],
                   opset: int, fixed_max_gt: bool = False,
                   progress: Progress | None = None) -> onnx.ModelProto:
    """The dynamo export of ``module`` with dynamic batch and max_gt (max_gt static with ``fixed_max_gt``),
    constants folded.

    optimize=False: the exporter's graph optimiser (torch 2.13 / onnxscript 0.7) folds ``x + 1e-8`` into ``x``,
    dropping SimOTA's log and IoU epsilons (-log(0) = inf costs). Constant folding alone keeps them and still gives
    TensorRT constant Reduce axes; unused nodes and initializers are then removed.
    """
    import onnxscript.optimizer

    batch = torch.export.Dim("batch", min=1, max=BATCH_LIMIT)
    target_axes = {0: batch} if fixed_max_gt else {0: batch, 1: torch.export.Dim("max_gt", min=1, max=MAX_GT_LIMIT)}
    with stage(progress, "trace and convert to ONNX"):
        program = torch.onnx.export(
            module, inputs, dynamo=True, optimize=False, opset_version=opset, input_names=list(INPUT_NAMES),
            output_names=list(output_names), dynamic_shapes=({0: batch}, target_axes, dict(target_axes)),
            verbose=False,
        )
    with stage(progress, "fold constants"):
        onnxscript.optimizer.fold_constants(program.model)
        onnxscript.optimizer.remove_unused_nodes(program.model)
    return program.model_proto


@dataclass
class Validation:
    """What ``validate_onnx`` found. ``ok`` when every list is empty."""

    path: Path
    checker_error: str | None = None
    forbidden: list[str] = field(default_factory=list)
    tensorrt: list[str] = field(default_factory=list)
    static_axes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checker_error is None and not self.forbidden and not self.tensorrt and not self.static_axes

    def problems(self) -> list[str]:
        found = [f"onnx.checker: {self.checker_error}"] if self.checker_error else []
        return found + self.forbidden + [f"TensorRT: {p}" for p in self.tensorrt] + self.static_axes


def validate_onnx(path: str | Path) -> Validation:
    """onnx.checker (full_check), forbidden ops, TensorRT compatibility, and symbolic batch/max_gt axes."""
    path = Path(path)
    result = Validation(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        result.checker_error = str(error).splitlines()[0]
    model = onnx.load(str(path))
    result.forbidden = find_forbidden_ops(model)
    result.tensorrt = [str(p) for p in check_tensorrt_compatibility(model)]
    result.static_axes = _static_axes(model)
    return result


def _static_axes(model: onnx.ModelProto) -> list[str]:
    """Inputs whose batch (and max_gt) axes were specialised to a number instead of staying symbolic; max_gt may be
    fixed where the metadata says the graph was exported so (``targets_per_chunk``)."""
    fixed_g = any(p.key == "targets_per_chunk" for p in model.metadata_props)
    problems = []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        dynamic = 1 if (value.name == INPUT_NAMES[0] or fixed_g) else 2  # predictions: batch only
        for axis in range(min(dynamic, len(dims))):
            if not dims[axis].dim_param:
                problems.append(f"input {value.name} axis {axis} is fixed at {dims[axis].dim_value}, not dynamic")
    return problems


def ort_latency_ms(path: str | Path, preset: Preset, repeats: int = 10, threads: int | None = None) -> float:
    """Median latency (ms) of the graph under onnxruntime's CPU EP at the preset's opt batch and max_gt."""
    from .ort_runtime import ort_session

    session = ort_session(path, ["CPUExecutionProvider"], threads=threads)
    config = preset_config(preset)
    cells = sum(h * w for h, w in level_shapes_for(preset))
    feeds = {k: v.numpy() for k, v in zip(INPUT_NAMES, example_inputs(config, cells, preset.batch[1], preset.max_gt[1]))}
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
