"""What the benchmark times: the references of every mode, the static module eager and compiled, the exported
graph under onnxruntime, and the gradient graph (exported ``with_grad``) under onnxruntime; CUDA variants where a
device exists. Measurements: ``fwd`` (assignment + loss forward under ``torch.no_grad``) and ``fwd+bwd`` (forward
and backward: eager torch subjects, the CUDA graph, and the gradient graph, whose one call computes the loss and
d loss / d predictions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..reference import REFERENCES

MEASUREMENTS = ("fwd", "fwd+bwd")
MEASUREMENT_LABELS = {"fwd": "assign+loss forward", "fwd+bwd": "forward+backward"}


@dataclass(frozen=True)
class Subject:
    """One thing that gets timed. ``family``: reference, eager, compile, cudagraph or ort."""

    name: str
    label: str
    family: str
    device: str
    measurements: tuple[str, ...]
    reference_mode: str | None = None  # the mode a reference implements
    provider: str | None = None  # onnxruntime execution provider
    options: tuple[tuple[str, object], ...] = ()  # constructor keywords of the timed module (eager family)
    with_grad: bool = False  # ort family: the graph exported with its gradient output
    with_audit: bool = True  # ort family: the graph's audit outputs (target_k, target_cells); False: without them

    @property
    def per_mode(self) -> bool:
        return self.reference_mode is None


_BOTH, _FWD = MEASUREMENTS, ("fwd",)


def _references(device: str) -> list[Subject]:
    """One subject per reference of the registry (``reference.REFERENCES``): every mode's reference is timed."""
    suffix = "" if device == "cpu" else f"-{device}"
    label = "" if device == "cpu" else f" {device.upper()}"
    return [Subject(f"{mode}{suffix}", f"{cls.__name__}{label}", "reference", device, _BOTH, reference_mode=mode)
            for mode, cls in REFERENCES.items()]


SUBJECTS: dict[str, Subject] = {s.name: s for s in (
    *_references("cpu"),
    Subject("static", "StaticYoloXLoss eager", "eager", "cpu", _BOTH),
    Subject("static-unchunked", "StaticYoloXLoss eager, max_memory_mib=None", "eager", "cpu", _BOTH,
            options=(("max_memory_mib", None),)),
    Subject("static-compile", "StaticYoloXLoss torch.compile", "compile", "cpu", _FWD),
    Subject("ort-cpu", "ONNX graph, onnxruntime CPU", "ort", "cpu", _FWD, provider="CPUExecutionProvider"),
    Subject("ort-cpu-noaudit", "ONNX graph without target_k / target_cells, onnxruntime CPU", "ort", "cpu", _FWD,
            provider="CPUExecutionProvider", with_audit=False),
    Subject("ort-cpu-grad", "ONNX gradient graph, onnxruntime CPU", "ort", "cpu", ("fwd+bwd",),
            provider="CPUExecutionProvider", with_grad=True),
    *_references("cuda"),
    Subject("static-cuda", "StaticYoloXLoss CUDA eager", "eager", "cuda", _BOTH),
    Subject("static-cudagraph", "StaticYoloXLoss CUDA graph", "cudagraph", "cuda", _BOTH),
    Subject("ort-cuda", "ONNX graph, onnxruntime CUDA", "ort", "cuda", _FWD, provider="CUDAExecutionProvider"),
    Subject("ort-tensorrt", "ONNX graph, onnxruntime TensorRT", "ort", "cuda", _FWD,
            provider="TensorrtExecutionProvider"),
)}
#: (device, mode) -> the subject timing that mode's reference on that device.
REFERENCE_SUBJECTS = {(s.device, s.reference_mode): s.name for s in SUBJECTS.values() if s.reference_mode}


def unavailable_reason(subject: Subject) -> str | None:
    """One line saying why ``subject`` cannot run here, or None."""
    if subject.device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    if subject.family == "ort":
        try:
            import onnxruntime
        except ImportError:
            return "onnxruntime is not installed"
        if subject.provider not in onnxruntime.get_available_providers():
            return f"onnxruntime offers no {subject.provider} (has {onnxruntime.get_available_providers()})"
    return None
