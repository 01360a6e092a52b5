"""The export pipeline behind ``yolox-export export``: export, validate, time, optionally build a TensorRT engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .contract import INPUT_NAMES, output_names
from ..files import check_output
from .onnx_export import Progress, Validation, export_onnx, ort_latency_ms, stage, validate_onnx
from .presets import Preset


@dataclass
class ExportReport:
    preset: Preset
    onnx_path: Path
    validation: Validation
    ort_latency_ms: float | None
    engine_path: Path | None = None
    output_names: tuple[str, ...] = ()

    def __str__(self) -> str:
        p = self.preset
        lines = [
            f"exported   {self.onnx_path}",
            f"preset     {p.name}: {p.image_size[0]}x{p.image_size[1]}, strides {list(p.strides)}, {p.num_classes} classes, "
            f"mode {p.mode}, opset {p.opset}, A = {p.num_anchors}",
            f"dynamic    batch {':'.join(map(str, p.batch))}, max_gt {':'.join(map(str, p.max_gt))}",
            f"outputs    {', '.join(self.output_names)}",
            "checks     onnx.checker full_check, forbidden ops, TensorRT parser support: "
            + ("all passed" if self.validation.ok else "FAILED"),
        ]
        lines += [f"  - {problem}" for problem in self.validation.problems()]
        if self.ort_latency_ms is not None:
            lines.append(f"latency    {self.ort_latency_ms:.1f} ms median, onnxruntime CPU EP, batch {p.batch[1]}, max_gt {p.max_gt[1]}")
        if self.engine_path is not None:
            lines.append(f"engine     {self.engine_path}")
        return "\n".join(lines)


def default_output_dir() -> Path:
    """Where exports go without an explicit path: ``models`` in the current directory, wherever the package lives."""
    return Path.cwd() / "models"


def export_and_validate(preset: Preset, output: str | Path, with_targets: bool = False, engine: str | Path | None = None,
                        time_it: bool = True, targets_per_chunk: int | None = None,
                        progress: Progress | None = None, allow_large_export: bool = False) -> ExportReport:
    """Export ``preset`` to ``output`` (``targets_per_chunk``, ``allow_large_export``: see ``export_onnx``; the
    gradient output when ``preset.with_grad``), validate it, time it under onnxruntime, and build ``engine`` if
    asked. Both output paths are checked before any work (``files.check_output``); ``progress(stage, done,
    total)`` reports each stage."""
    check_output(output, "onnx")
    if engine is not None:
        check_output(engine, "engine")
    path = export_onnx(preset, output, with_targets=with_targets, targets_per_chunk=targets_per_chunk,
                       progress=progress, allow_large_export=allow_large_export)
    names = output_names(with_targets, preset.with_grad)
    with stage(progress, "validate"):
        validation = validate_onnx(path)
    latency = None
    if time_it and validation.ok:
        with stage(progress, "time under onnxruntime"):
            latency = ort_latency_ms(path, preset)
    engine_path = None
    if engine is not None and validation.ok:
        from .tensorrt import build_engine

        with stage(progress, "build the TensorRT engine"):
            engine_path = build_engine(path, engine, tensorrt_profiles(preset))
    return ExportReport(preset, path, validation, latency, engine_path, names)


def tensorrt_profiles(preset: Preset) -> dict[str, tuple[tuple[int, ...], ...]]:
    """One optimisation profile (min, opt, max) per dynamic input, from the preset's batch and max_gt ranges."""
    cells, width = preset.num_anchors, 5 + preset.num_classes
    ranges = list(zip(preset.batch, preset.max_gt))
    return dict(zip(INPUT_NAMES, (tuple((b, cells, width) for b in preset.batch),  # predictions [B, A, 5 + C]
                                  tuple((b, g, 5) for b, g in ranges),  # targets [B, G, 5]
                                  tuple((b, g) for b, g in ranges))))  # target_mask [B, G]
