"""Benchmark of the static assignment + loss against the two eager references (``scripts/bench.py``).

Subjects (``SUBJECTS``): the references ``RegularYoloXLoss`` and ``FastYoloXLoss``; ``StaticYoloXLoss`` eager;
``PaddedYoloXLoss`` under ``torch.compile(fullgraph=True, dynamic=False)``; the exported ONNX graph under
onnxruntime's CPU EP. With a CUDA device also the references and the static module eager on CUDA, the padded
module captured in a CUDA graph, and the ONNX graph under onnxruntime's CUDA and TensorRT EPs. The CUDA code is
written against the documented torch / onnxruntime APIs and has never run: the development machine has no GPU, so
those subjects are skipped there and the results say so.

Measurements: ``fwd`` (assignment + loss forward under ``torch.no_grad``) and ``fwd+bwd`` (loss forward and
``backward`` to the predictions; eager torch subjects only).

Method:

* Inputs come from ``make_scenario(kind, batch, (H, W), num_classes, seed)``, regenerated in every worker from the
  seed; each record carries the SHA-1 of the predictions and targets, so the JSON shows that every subject saw the
  same bytes. Every subject gets the same per-level head maps and [N, 6] targets: padded subjects (torch.compile,
  CUDA graph, onnxruntime) do ``flatten_levels`` + ``pad_targets`` inside the timed call, as the references
  flatten inside theirs. Eager modules run with their default input validation on.
* Timing: ``time.perf_counter`` around one call (CUDA: synchronised before and after). ``warmup`` untimed calls,
  then at least min(3, repeats) and at most ``repeats`` timed calls, stopping early once ``max_seconds`` of timed
  calls have been spent. Reported: median, IQR (inclusive quartiles), min and max.
* Ratios: reference median / subject median for the same case, device and measurement ("x times faster").
* Peak extra memory (CPU): by default each (case, subject) runs in a fresh subprocess. Before the measured call the
  heap is trimmed (glibc ``malloc_trim``), VmRSS is read and the resident-set high-water mark is reset (``5`` to
  ``/proc/self/clear_refs``); after it, VmHWM - VmRSS(before) is the call's peak extra resident memory. The
  measured call is the first timed call for torch subjects (torch's CPU allocator caches nothing), and the first
  call of the session for onnxruntime (its arena grows during that call and is reused afterwards). Without
  clear_refs the fallback is ru_maxrss(after) - VmRSS(before), an upper bound. CUDA (torch subjects):
  ``max_memory_allocated`` - ``memory_allocated`` after ``reset_peak_memory_stats``; onnxruntime CUDA/TensorRT
  memory is not measured. The memory multiple is peak extra / (B * G * A * 4 bytes), G the padded targets per
  image (the batch's largest count) and A the number of cells.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import gc
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .config import MODES, LossConfig
from .grid import flatten_levels, level_shapes
from .reference import FastYoloXLoss, RegularYoloXLoss
from .scenarios import KINDS, make_scenario
from .static import PaddedYoloXLoss, StaticYoloXLoss
from .targets import pad_targets

SCHEMA = 1
STRIDES = (8, 16, 32)
OPSET = 20
MEASUREMENTS = ("fwd", "fwd+bwd")
MEASUREMENT_LABELS = {"fwd": "assign+loss forward", "fwd+bwd": "forward+backward"}
INPUT_NAMES = ("predictions", "targets", "target_mask")
#: OMP_WAIT_POLICY for the workers ("default": leave the environment alone). PASSIVE by default: on a machine whose
#: cores are shared (2 vCPUs with other processes running), libgomp's spin-waiting costs ~10 ms per parallel region.
OMP_WAIT_POLICIES = ("PASSIVE", "ACTIVE", "default")
ROOT = Path(__file__).resolve().parent.parent
MEMORY_METHOD = ("VmHWM - VmRSS around the measured call (RSS high-water mark reset via /proc/self/clear_refs, "
                 "heap trimmed with malloc_trim first)")
MEMORY_FALLBACK = "ru_maxrss(after) - VmRSS(before) (upper bound: clear_refs unavailable)"
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated - memory_allocated (after reset_peak_memory_stats)"


# ---------------------------------------------------------------------------------------------------- subjects


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

    @property
    def per_mode(self) -> bool:
        return self.reference_mode is None


_BOTH, _FWD = MEASUREMENTS, ("fwd",)
SUBJECTS: dict[str, Subject] = {s.name: s for s in (
    Subject("regular", "RegularYoloXLoss", "reference", "cpu", _BOTH, reference_mode="regular"),
    Subject("fast", "FastYoloXLoss", "reference", "cpu", _BOTH, reference_mode="fast"),
    Subject("static", "StaticYoloXLoss eager", "eager", "cpu", _BOTH),
    Subject("static-compile", "StaticYoloXLoss torch.compile", "compile", "cpu", _FWD),
    Subject("ort-cpu", "ONNX graph, onnxruntime CPU", "ort", "cpu", _FWD, provider="CPUExecutionProvider"),
    Subject("regular-cuda", "RegularYoloXLoss CUDA", "reference", "cuda", _BOTH, reference_mode="regular"),
    Subject("fast-cuda", "FastYoloXLoss CUDA", "reference", "cuda", _BOTH, reference_mode="fast"),
    Subject("static-cuda", "StaticYoloXLoss CUDA eager", "eager", "cuda", _BOTH),
    Subject("static-cudagraph", "StaticYoloXLoss CUDA graph", "cudagraph", "cuda", _FWD),
    Subject("ort-cuda", "ONNX graph, onnxruntime CUDA", "ort", "cuda", _FWD, provider="CUDAExecutionProvider"),
    Subject("ort-tensorrt", "ONNX graph, onnxruntime TensorRT", "ort", "cuda", _FWD,
            provider="TensorrtExecutionProvider"),
)}
REFERENCE_SUBJECTS = {("cpu", "regular"): "regular", ("cpu", "fast"): "fast",
                      ("cuda", "regular"): "regular-cuda", ("cuda", "fast"): "fast-cuda"}


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


# ---------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Case:
    """One input configuration: a seeded scenario of ``kind``."""

    kind: str
    batch: int
    image_size: tuple[int, int]
    num_classes: int
    seed: int = 0
    strides: tuple[int, ...] = STRIDES

    @property
    def label(self) -> str:
        return f"{self.kind}, B={self.batch}, {self.image_size[0]}x{self.image_size[1]}, C={self.num_classes}"

    @property
    def cells(self) -> int:
        return sum((self.image_size[0] // s) * (self.image_size[1] // s) for s in self.strides)


@dataclass(frozen=True)
class Settings:
    """What one benchmark run covers and how it measures."""

    kinds: tuple[str, ...]
    batches: tuple[int, ...]
    image_sizes: tuple[int, ...]
    num_classes: int
    modes: tuple[str, ...]
    subjects: tuple[str, ...]
    threads: int
    repeats: int
    warmup: int
    max_seconds: float
    seed: int
    out: Path
    isolate: bool = True
    timeout: float = 3600.0
    profile: bool = False
    preset: str = "targets"
    omp_wait_policy: str = "PASSIVE"

    def cases(self) -> list[Case]:
        return [Case(kind, batch, (size, size), self.num_classes, self.seed)
                for size in self.image_sizes for batch in self.batches for kind in self.kinds]

    @property
    def onnx_cache(self) -> Path:
        return self.out / "onnx_cache"


#: Named configurations. "targets" is exactly the project's target configuration.
PRESETS: dict[str, dict[str, Any]] = {
    "targets": dict(kinds=("coco", "crowded"), batches=(16,), image_sizes=(640,), num_classes=80,
                    modes=("regular", "fast"), threads=2, repeats=5, warmup=1, max_seconds=60.0, isolate=True),
    "quick": dict(kinds=("coco", "crowded"), batches=(2,), image_sizes=(256,), num_classes=80,
                  modes=("regular", "fast"), threads=2, repeats=3, warmup=1, max_seconds=2.0, isolate=False),
    "full": dict(kinds=("coco", "crowded"), batches=(1, 8, 16, 32), image_sizes=(320, 640, 1280), num_classes=80,
                 modes=("regular", "fast"), threads=2, repeats=5, warmup=1, max_seconds=60.0, isolate=True),
}


def make_settings(preset: str = "targets", out: str | Path = "results", **overrides: Any) -> Settings:
    """Settings from a named preset with ``overrides`` (None values ignored). Raises ValueError on a bad value."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    values = dict(PRESETS[preset], subjects=tuple(SUBJECTS), seed=0, out=Path(out), preset=preset)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("kinds", "batches", "image_sizes", "modes", "subjects"):
        values[key] = tuple(values[key])
    settings = Settings(**values)
    check_settings(settings)
    return settings


def check_settings(s: Settings) -> None:
    """Raise ValueError naming the first bad option."""
    _check_members("--kinds", s.kinds, KINDS)
    _check_members("--modes", s.modes, MODES)
    _check_members("--subjects", s.subjects, tuple(SUBJECTS))
    _check_positive("--batch", s.batches)
    _check_positive("--image-size", s.image_sizes)
    bad = [size for size in s.image_sizes if size % max(STRIDES)]
    if bad:
        raise ValueError(f"--image-size: {bad} not divisible by the largest stride {max(STRIDES)}")
    _check_positive("--num-classes", (s.num_classes,))
    _check_positive("--threads", (s.threads,))
    _check_positive("--repeats", (s.repeats,))
    if s.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {s.warmup}")
    _check_members("--omp-wait-policy", (s.omp_wait_policy,), OMP_WAIT_POLICIES)
    if not s.max_seconds > 0 or not s.timeout > 0:
        raise ValueError(f"--max-seconds and --timeout must be > 0, got {s.max_seconds} and {s.timeout}")


def _check_members(option: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    if not values:
        raise ValueError(f"{option}: give at least one value")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{option}: unknown {unknown}; choose from {list(allowed)}")


def _check_positive(option: str, values: Sequence[int]) -> None:
    if not values:
        raise ValueError(f"{option}: give at least one value")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"{option}: expected integers >= 1, got {bad}")


# ---------------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One (case, subject, mode) measured in one process. ``mode`` is the static mode, or the reference's own."""

    case: Case
    subject: str
    mode: str
    threads: int
    repeats: int
    warmup: int
    max_seconds: float
    onnx_path: str | None = None
    cache_dir: str | None = None
    spinning: bool = True  # onnxruntime intra-op spin-waiting (off with OMP_WAIT_POLICY=PASSIVE)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Job":
        case = dict(data["case"], image_size=tuple(data["case"]["image_size"]), strides=tuple(data["case"]["strides"]))
        return cls(**dict(data, case=Case(**case)))


def plan_jobs(settings: Settings, onnx_paths: dict[tuple, str]) -> list[Job]:
    """Every (case, subject, mode) to run, references once per case, static subjects once per mode."""
    jobs = []
    for case in settings.cases():
        for name in settings.subjects:
            subject = SUBJECTS[name]
            modes = settings.modes if subject.per_mode else (subject.reference_mode,)
            for mode in modes:
                path = onnx_paths.get(onnx_key(case, mode)) if subject.family == "ort" else None
                jobs.append(Job(case, name, mode, settings.threads, settings.repeats, settings.warmup,
                                settings.max_seconds, path, str(settings.onnx_cache),
                                spinning=settings.omp_wait_policy != "PASSIVE"))
    return jobs


# ---------------------------------------------------------------------------------------------------- memory


def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssMeter:
    """Peak extra resident memory of one call (see the module docstring)."""

    def __init__(self) -> None:
        self.method = MEMORY_METHOD
        self._baseline = 0
        self._reset = False

    def start(self) -> None:
        _trim_heap()
        self._baseline = (_proc_status_kb("VmRSS") or 0) * 1024
        self._reset = _reset_peak_rss()
        self.method = MEMORY_METHOD if self._reset else MEMORY_FALLBACK

    def stop(self) -> int:
        peak_kb = _proc_status_kb("VmHWM") if self._reset else None
        if peak_kb is None:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, peak_kb * 1024 - self._baseline)


class CudaMeter:
    """Peak extra CUDA memory allocated through torch during one call."""

    method = CUDA_MEMORY_METHOD

    def start(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self._baseline = torch.cuda.memory_allocated()

    def stop(self) -> int:
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - self._baseline)


def make_meter(subject: Subject):
    if subject.device == "cpu":
        return RssMeter()
    return None if subject.family == "ort" else CudaMeter()


# ---------------------------------------------------------------------------------------------------- steps


@dataclass
class Inputs:
    """The case's head maps and targets on the subject's device."""

    predictions: list[torch.Tensor]
    targets: torch.Tensor
    sha1: str

    @property
    def batch(self) -> int:
        return int(self.predictions[0].shape[0])


@dataclass
class Step:
    """One call to time. ``reset`` runs untimed before each call; ``loss`` reads the loss from a call's output."""

    call: Callable[[], Any]
    loss: Callable[[Any], float]
    reset: Callable[[], None] = lambda: None
    setup_s: float = 0.0
    memory_on_first_call: bool = False


def make_inputs(case: Case, device: str) -> Inputs:
    scenario = make_scenario(case.kind, case.batch, case.image_size, case.num_classes, case.strides, case.seed)
    digest = hashlib.sha1()
    for tensor in (*scenario.predictions, scenario.targets):
        digest.update(tensor.contiguous().numpy().tobytes())
    predictions = [p.to(device) for p in scenario.predictions]
    return Inputs(predictions, scenario.targets.to(device), digest.hexdigest())


def padded_inputs(inputs: Inputs, max_gt: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G]), G >= 1 as ``StaticYoloXLoss`` pads it."""
    raw = flatten_levels(inputs.predictions)
    gt, mask = pad_targets(inputs.targets, inputs.batch, max_gt, validate=False)
    if gt.shape[1] == 0:
        gt, mask = gt.new_zeros((inputs.batch, 1, 5)), mask.new_zeros((inputs.batch, 1))
    return raw, gt, mask


def padded_max_gt(inputs: Inputs) -> int:
    return int(padded_inputs(inputs)[1].shape[1])


def loss_step(module: torch.nn.Module, inputs: Inputs, measurement: str) -> Step:
    """A module with the references' interface: no-grad forward, or forward + backward to fresh leaves."""
    if measurement == "fwd":
        def forward():
            with torch.no_grad():
                return module(inputs.predictions, inputs.targets)[0]
        return Step(forward, float)
    leaves = [p.detach().clone().requires_grad_(True) for p in inputs.predictions]

    def reset():
        for leaf in leaves:
            leaf.grad = None

    def forward_backward():
        loss, _ = module(leaves, inputs.targets)
        loss.backward()
        return loss.detach()
    return Step(forward_backward, float, reset)


def reference_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    cls = RegularYoloXLoss if subject.reference_mode == "regular" else FastYoloXLoss
    return loss_step(cls(job.case.strides, job.case.num_classes), inputs, measurement)


def eager_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    return loss_step(StaticYoloXLoss(job.case.strides, job.case.num_classes, mode=job.mode), inputs, measurement)


def _padded_module(job: Job, inputs: Inputs, device: str) -> PaddedYoloXLoss:
    config = LossConfig(tuple(job.case.strides), job.case.num_classes, mode=job.mode)
    return PaddedYoloXLoss(config, level_shapes(inputs.predictions)).to(device).eval()


def compile_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """torch.compile(fullgraph=True, dynamic=False) of the padded module; compiled by the first call (setup_s)."""
    torch._dynamo.reset()
    compiled = torch.compile(_padded_module(job, inputs, subject.device), fullgraph=True, dynamic=False)

    def forward():
        with torch.no_grad():
            return compiled(*padded_inputs(inputs))
    start = time.perf_counter()
    forward()
    return Step(forward, lambda out: float(out[3][5]), setup_s=time.perf_counter() - start)


def cudagraph_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """The padded module captured in one torch.cuda.CUDAGraph; each call pads into the static inputs and replays."""
    start = time.perf_counter()
    module = _padded_module(job, inputs, "cuda")
    static_inputs = [t.clone() for t in padded_inputs(inputs)]
    max_gt = int(static_inputs[1].shape[1])
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            module(*static_inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        outputs = module(*static_inputs)

    def replay():
        for target, source in zip(static_inputs, padded_inputs(inputs, max_gt)):
            target.copy_(source)
        graph.replay()
        return outputs
    torch.cuda.synchronize()
    return Step(replay, lambda out: float(out[3][5]), setup_s=time.perf_counter() - start)


def ort_session(path: str, provider: str, threads: int, cache_dir: str | None, profile_prefix: str | None = None,
                spinning: bool = True):
    """An InferenceSession on ``provider`` (TensorRT falls back to CUDA for nodes it does not take)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    providers: list = [provider]
    if provider == "CUDAExecutionProvider":
        providers = [(provider, {"device_id": 0})]
    elif provider == "TensorrtExecutionProvider":
        trt_cache = str(Path(cache_dir or tempfile.gettempdir()) / "trt_engines")
        providers = [(provider, {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": trt_cache}),
                     ("CUDAExecutionProvider", {"device_id": 0})]
    session = ort.InferenceSession(path, options, providers=providers)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"onnxruntime did not take {provider}; session providers: {session.get_providers()}")
    return session


def ort_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    if not job.onnx_path:
        raise RuntimeError("no ONNX graph for this mode (export failed or skipped)")
    start = time.perf_counter()
    session = ort_session(job.onnx_path, subject.provider, job.threads, job.cache_dir, spinning=job.spinning)
    setup = time.perf_counter() - start
    if subject.device == "cpu":
        def run_cpu():
            raw, gt, mask = padded_inputs(inputs)
            return session.run(None, {"predictions": raw.numpy(), "targets": gt.numpy(), "target_mask": mask.numpy()})
        return Step(run_cpu, lambda out: float(out[3][5]), setup_s=setup, memory_on_first_call=True)
    return _ort_cuda_step(session, inputs, setup)


_NUMPY_TYPES = {torch.float32: "float32", torch.bool: "bool_", torch.int64: "int64"}


def _ort_cuda_step(session, inputs: Inputs, setup: float) -> Step:
    """Zero-copy run on CUDA tensors through onnxruntime's IOBinding; outputs stay on the device."""
    import numpy as np

    binding = session.io_binding()
    output_names = [o.name for o in session.get_outputs()]

    def run_cuda():
        tensors = [t.contiguous() for t in padded_inputs(inputs)]
        for name, tensor in zip(INPUT_NAMES, tensors):
            binding.bind_input(name, "cuda", 0, getattr(np, _NUMPY_TYPES[tensor.dtype]), tuple(tensor.shape),
                               tensor.data_ptr())
        for name in output_names:
            binding.bind_output(name, "cuda", 0)
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding

    return Step(run_cuda, lambda out: float(out.copy_outputs_to_cpu()[3][5]), setup_s=setup)


STEP_BUILDERS = {"reference": reference_step, "eager": eager_step, "compile": compile_step,
                 "cudagraph": cudagraph_step, "ort": ort_step}


# ---------------------------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    times_s: list[float]
    peak_extra_bytes: int | None
    last_output: Any


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_step(step: Step, device: str, warmup: int, repeats: int, max_seconds: float, meter) -> Timing:
    """``warmup`` untimed calls, then between min(3, repeats) and ``repeats`` timed calls within ``max_seconds``."""
    memory_index = 0 if step.memory_on_first_call else warmup
    minimum, times, peak, output, spent = warmup + min(3, repeats), [], None, None, 0.0
    for index in range(warmup + repeats):
        if index >= minimum and spent >= max_seconds:
            break
        output = None
        step.reset()
        if meter is not None and index == memory_index:
            meter.start()
        _sync(device)
        start = time.perf_counter()
        output = step.call()
        _sync(device)
        elapsed = time.perf_counter() - start
        if meter is not None and index == memory_index:
            peak = meter.stop()
        if index >= warmup:
            times.append(elapsed)
            spent += elapsed
    return Timing(times, peak, output)


def summarise(times: Sequence[float]) -> dict[str, float | int | None]:
    """median, inclusive quartiles, min, max and n of ``times`` (seconds)."""
    if not times:
        return {"n": 0, "median_s": None, "q1_s": None, "q3_s": None, "min_s": None, "max_s": None}
    q1, q3 = (statistics.quantiles(times, n=4, method="inclusive")[::2] if len(times) > 1 else (times[0], times[0]))
    return {"n": len(times), "median_s": statistics.median(times), "q1_s": q1, "q3_s": q3,
            "min_s": min(times), "max_s": max(times)}


# ---------------------------------------------------------------------------------------------------- worker


def _base_record(job: Job, subject: Subject, measurement: str) -> dict:
    return {"case": dataclasses.asdict(job.case), "subject": subject.name, "label": subject.label,
            "family": subject.family, "mode": job.mode, "device": subject.device, "measurement": measurement,
            "threads": job.threads, "warmup": job.warmup, "status": "error", "error": None, "times_s": [],
            **summarise([]), "setup_s": None, "peak_extra_bytes": None, "memory_method": None, "loss": None}


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other processes on the machine disturb the timings."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def measure(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> dict:
    """One record: build the step, time it, read its peak memory and its loss. Errors become the record's error."""
    record = dict(_base_record(job, subject, measurement), load_before=load_average())
    try:
        step = STEP_BUILDERS[subject.family](job, subject, inputs, measurement)
        meter = make_meter(subject)
        timing = time_step(step, subject.device, job.warmup, job.repeats, job.max_seconds, meter)
        record.update(summarise(timing.times_s), status="ok", times_s=timing.times_s, setup_s=step.setup_s,
                      peak_extra_bytes=timing.peak_extra_bytes, loss=step.loss(timing.last_output),
                      memory_method=None if meter is None else meter.method, load_after=load_average())
    except Exception as error:  # noqa: BLE001 - one subject failing must not stop the benchmark
        record["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return record


def run_job(job: Job) -> list[dict]:
    """Every measurement of one job, in this process."""
    torch.set_num_threads(job.threads)
    subject = SUBJECTS[job.subject]
    inputs = make_inputs(job.case, subject.device)
    shape = {"inputs_sha1": inputs.sha1, "num_targets": int(inputs.targets.shape[0]),
             "max_gt": padded_max_gt(inputs), "cells": job.case.cells}
    if job.onnx_path:
        shape["onnx_file"] = Path(job.onnx_path).name
    return [dict(measure(job, subject, inputs, m), **shape) for m in subject.measurements]


PROGRESS_PREFIX = "@@bench "


def worker_main(argv: Sequence[str]) -> int:
    """``python -m yolox_export.bench JOBS.json RESULTS.json``: run jobs in this fresh process, in order.

    The results file is rewritten after every job, so the jobs done before a crash keep their records; each
    record's progress line goes to stdout behind ``PROGRESS_PREFIX``."""
    jobs = [Job.from_json(data) for data in json.loads(Path(argv[0]).read_text())]
    warnings.simplefilter("ignore")
    done: list[list[dict]] = []
    for job in jobs:
        done.append(run_job(job))
        Path(argv[1]).write_text(json.dumps(done))
        for record in done[-1]:
            print(PROGRESS_PREFIX + _progress(record), flush=True)
    return 0


def _worker_env(threads: int, omp_wait_policy: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_in_worker(jobs: Sequence[Job], timeout: float, omp_wait_policy: str = "PASSIVE",
                  log: Callable[[str], None] = print) -> list[dict]:
    """``run_job`` of every job in one fresh subprocess (clean heap, allocator and thread pools, the OpenMP policy
    applied); ``timeout`` is per job. Jobs a crash or timeout left unfinished become error records."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs_path, result_path, err_path = (Path(tmp) / name for name in ("jobs.json", "results.json", "stderr"))
        jobs_path.write_text(json.dumps([job.to_json() for job in jobs]))
        command = [sys.executable, "-m", "yolox_export.bench", str(jobs_path), str(result_path)]
        with open(err_path, "w") as stderr:
            reason = _run_streaming(command, _worker_env(jobs[0].threads, omp_wait_policy), stderr,
                                    timeout * len(jobs), log)
        done = json.loads(result_path.read_text()) if result_path.is_file() else []
        if reason is None and len(done) < len(jobs):
            reason = "worker stopped early: " + _last_line(err_path.read_text())
        elif reason is not None and reason.startswith("worker exited"):
            reason += ": " + _last_line(err_path.read_text())
    records = [record for job_records in done for record in job_records]
    return records + [record for job in jobs[len(done):] for record in _failed(job, reason)]


def _run_streaming(command: list[str], env: dict, stderr, timeout: float, log: Callable[[str], None]) -> str | None:
    """Run ``command``, forwarding its progress lines to ``log``; None on success, else why it failed."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    expired: list[bool] = []
    timer = threading.Timer(timeout, lambda: (expired.append(True), proc.kill()))
    timer.start()
    try:
        for line in proc.stdout:
            if line.startswith(PROGRESS_PREFIX):
                log(line[len(PROGRESS_PREFIX):].rstrip())
        code = proc.wait()
    finally:
        timer.cancel()
    if expired:
        return f"timed out after {timeout:.0f} s"
    if code < 0:
        return f"worker killed by signal {-code}" + (" (out of memory?)" if code == -9 else "")
    return None if code == 0 else f"worker exited with {code}"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def _failed(job: Job, reason: str) -> list[dict]:
    subject = SUBJECTS[job.subject]
    return [dict(_base_record(job, subject, m), error=reason) for m in subject.measurements]


# ---------------------------------------------------------------------------------------------------- ONNX cache


def onnx_key(case: Case, mode: str) -> tuple:
    return (mode, tuple(case.image_size), case.num_classes, tuple(case.strides))


def source_digest() -> str:
    """SHA-1 of the code that shapes the exported graph, and the torch version: a changed module re-exports."""
    digest = hashlib.sha1(torch.__version__.encode())
    package = Path(__file__).resolve().parent
    files = sorted((package / "static").glob("*.py")) + [package / name for name in
                                                          ("boxes.py", "grid.py", "config.py", "export/onnx_export.py")]
    for path in files:
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_onnx(key: tuple, cache_dir: Path) -> Path:
    """The cached export for (mode, image size, C, strides), exported with ``export_onnx`` when missing."""
    from .export.onnx_export import export_onnx
    from .export.presets import Preset

    mode, image_size, num_classes, strides = key
    name = f"{mode}_{image_size[0]}x{image_size[1]}_c{num_classes}_s{'-'.join(map(str, strides))}_{source_digest()}"
    path = cache_dir / f"{name}.onnx"
    if path.is_file():
        return path
    preset = Preset(name, tuple(image_size), tuple(strides), num_classes, mode, (1, 1, 1), (1, 1, 1), OPSET)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    export_onnx(preset, partial)
    partial.replace(path)
    return path


def export_graphs(settings: Settings, log: Callable[[str], None]) -> tuple[dict[tuple, str], list[dict]]:
    """Export the ONNX graphs the ort subjects need; returns ({key: path}, [export failures])."""
    if not any(SUBJECTS[s].family == "ort" for s in settings.subjects):
        return {}, []
    keys = sorted({onnx_key(case, mode) for case in settings.cases() for mode in settings.modes})
    paths, failures = {}, []
    for key in keys:
        start = time.perf_counter()
        try:
            paths[key] = str(ensure_onnx(key, settings.onnx_cache))
            log(f"onnx   {Path(paths[key]).name} ready ({time.perf_counter() - start:.1f} s)")
        except Exception as error:  # noqa: BLE001
            failures.append({"key": list(key), "error": f"{type(error).__name__}: {error}"})
            log(f"onnx   export failed for {key}: {error}")
    return paths, failures


# ---------------------------------------------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_model": cpu_model(),
            "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), "memory_gib": _memory_gib(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def library_versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "numpy", "tensorrt",
                 "yolox-export"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions.setdefault("torch", torch.__version__)
    return versions


# ---------------------------------------------------------------------------------------------------- analysis


def _case_key(case: dict) -> tuple:
    return (case["kind"], case["batch"], tuple(case["image_size"]), case["num_classes"], case["seed"])


def add_ratios(records: list[dict]) -> None:
    """Set ratio_vs_regular / ratio_vs_fast = reference median / record median (same case, device, measurement)."""
    references = {(_case_key(r["case"]), r["device"], r["measurement"], r["subject"]): r["median_s"]
                  for r in records if r["family"] == "reference" and r["status"] == "ok"}
    for r in records:
        for mode in ("regular", "fast"):
            name = REFERENCE_SUBJECTS[(r["device"], mode)]
            reference = references.get((_case_key(r["case"]), r["device"], r["measurement"], name))
            ok = reference is not None and r["status"] == "ok" and r["median_s"]
            r[f"ratio_vs_{mode}"] = reference / r["median_s"] if ok else None


def bga4_bytes(record: dict) -> int:
    """B·G·A·4 bytes of a record's case (G = padded targets per image, at least 1)."""
    return record["case"]["batch"] * max(record.get("max_gt") or 1, 1) * record["cells"] * 4


def memory_multiple(record: dict) -> float | None:
    if record.get("peak_extra_bytes") is None or not record.get("cells"):
        return None
    return record["peak_extra_bytes"] / bga4_bytes(record)


@dataclass(frozen=True)
class Target:
    """A project target on one kind: ``metric`` of (subject, mode, measurement) compared with ``threshold``.
    ``mode`` None takes the worst over the modes measured."""

    name: str
    kind: str
    subject: str
    mode: str | None
    measurement: str
    metric: str  # ratio_vs_regular | ratio_vs_fast | memory_multiple
    threshold: float
    at_least: bool = True


TARGETS = (
    Target("ORT graph vs FastYoloXLoss, assign+loss forward", "coco", "ort-cpu", "fast", "fwd", "ratio_vs_fast", 3.0),
    Target("ORT graph vs FastYoloXLoss, assign+loss forward", "crowded", "ort-cpu", "fast", "fwd", "ratio_vs_fast",
           1.0),
    Target("ORT graph vs RegularYoloXLoss, assign+loss forward", "coco", "ort-cpu", "regular", "fwd",
           "ratio_vs_regular", 10.0),
    Target("ORT graph vs RegularYoloXLoss, assign+loss forward", "crowded", "ort-cpu", "regular", "fwd",
           "ratio_vs_regular", 20.0),
    Target("StaticYoloXLoss eager vs RegularYoloXLoss, forward+backward", "coco", "static", "regular", "fwd+bwd",
           "ratio_vs_regular", 4.0),
    Target("StaticYoloXLoss eager vs RegularYoloXLoss, forward+backward", "crowded", "static", "regular", "fwd+bwd",
           "ratio_vs_regular", 4.0),
    Target("StaticYoloXLoss torch.compile vs FastYoloXLoss, assign+loss forward", "coco", "static-compile", "fast",
           "fwd", "ratio_vs_fast", 2.0),
    Target("Peak extra memory, ORT graph (x B·G·A·4 bytes)", "coco", "ort-cpu", None, "fwd", "memory_multiple", 12.0,
           False),
    Target("Peak extra memory, ORT graph (x B·G·A·4 bytes)", "crowded", "ort-cpu", None, "fwd", "memory_multiple",
           12.0, False),
    Target("Peak extra memory, StaticYoloXLoss eager forward (x B·G·A·4 bytes)", "coco", "static", None, "fwd",
           "memory_multiple", 12.0, False),
    Target("Peak extra memory, StaticYoloXLoss eager forward (x B·G·A·4 bytes)", "crowded", "static", None, "fwd",
           "memory_multiple", 12.0, False),
)


def _metric(record: dict, metric: str) -> float | None:
    return memory_multiple(record) if metric == "memory_multiple" else record.get(metric)


def evaluate_target(target: Target, records: list[dict]) -> dict:
    """PASS / MISS / N/A of ``target`` over ``records`` (those of one case group)."""
    matching = [r for r in records if r["subject"] == target.subject and r["measurement"] == target.measurement
                and (target.mode is None or r["mode"] == target.mode) and r["case"]["kind"] == target.kind]
    values = [(_metric(r, target.metric), r["mode"]) for r in matching]
    values = [(v, m) for v, m in values if v is not None]
    result = {"name": target.name, "kind": target.kind, "subject": target.subject, "measurement": target.measurement,
              "metric": target.metric, "threshold": target.threshold, "at_least": target.at_least}
    if not values:
        why = "not measured" if not matching else "; ".join(r["error"] or "no value" for r in matching)
        return dict(result, value=None, mode=target.mode, status="N/A", note=why)
    value, mode = (min if target.at_least else max)(values)
    passed = value >= target.threshold if target.at_least else value <= target.threshold
    return dict(result, value=value, mode=mode, status="PASS" if passed else "MISS", note=None)


def evaluate_targets(records: list[dict]) -> list[dict]:
    """Every target on every (B, image size, C, seed) group that has the target's kind."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        c = r["case"]
        groups.setdefault((c["batch"], tuple(c["image_size"]), c["num_classes"], c["seed"]), []).append(r)
    results = []
    for (batch, size, classes, _), group in groups.items():
        kinds = {r["case"]["kind"] for r in group}
        for target in TARGETS:
            if target.kind in kinds:
                results.append(dict(evaluate_target(target, group), batch=batch, image_size=list(size),
                                    num_classes=classes))
    return results


# ---------------------------------------------------------------------------------------------------- run


def skipped_subjects(settings: Settings) -> tuple[list[str], list[dict]]:
    """(subjects to run, [{subject, reason}] for those that cannot run here)."""
    run, skipped = [], []
    for name in settings.subjects:
        reason = unavailable_reason(SUBJECTS[name])
        if reason:
            skipped.append({"subject": name, "label": SUBJECTS[name].label, "reason": reason})
        else:
            run.append(name)
    return run, skipped


def _progress(record: dict) -> str:
    head = f"{record['case']['kind']:8s} B={record['case']['batch']:<3d} {record['case']['image_size'][0]:>4d}px " \
           f"{record['subject']:16s} {record['mode']:7s} {record['measurement']:7s}"
    if record["status"] != "ok":
        return f"{head} ERROR {record['error']}"
    peak = record["peak_extra_bytes"]
    memory = "" if peak is None else f"  peak +{peak / 2**20:.0f} MiB"
    return f"{head} {record['median_s'] * 1e3:10.1f} ms median of {record['n']}{memory}"


def run_benchmark(settings: Settings, argv: Sequence[str] = (), log: Callable[[str], None] = print) -> dict:
    """Run every job of ``settings``; return the results document (see ``render_markdown`` for its use)."""
    subjects, skipped = skipped_subjects(settings)
    for entry in skipped:
        log(f"skip   {entry['subject']}: {entry['reason']}")
    settings = dataclasses.replace(settings, subjects=tuple(subjects))
    onnx_paths, export_failures = export_graphs(settings, log)
    jobs, load_start = plan_jobs(settings, onnx_paths), load_average()
    batches = [[job] for job in jobs] if settings.isolate else [jobs]
    records = [record for batch in batches if batch
               for record in run_in_worker(batch, settings.timeout, settings.omp_wait_policy, log)]
    add_ratios(records)
    machine = dict(machine_info(), load_average_start=load_start, load_average_end=load_average())
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python scripts/bench.py", *argv]), "machine": machine,
            "versions": library_versions(), "settings": _settings_json(settings), "skipped": skipped,
            "export_failures": export_failures, "records": records, "targets": evaluate_targets(records)}


def _settings_json(settings: Settings) -> dict:
    data = dataclasses.asdict(settings)
    data.update(out=str(settings.out), opset=OPSET, strides=list(STRIDES), onnx_source_digest=source_digest(),
                memory_method=MEMORY_METHOD + ("; fresh subprocess per (case, subject)" if settings.isolate
                                               else "; all subjects in one worker process, one after another"),
                timing_method="time.perf_counter per call (CUDA synchronised); median, inclusive IQR, min, max")
    return data


# ---------------------------------------------------------------------------------------------------- outputs


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _load(values: Sequence[float] | None) -> str:
    return "-" if not values else "/".join(f"{v:.1f}" for v in values)


def _header(results: dict) -> list[str]:
    m, v, s = results["machine"], results["versions"], results["settings"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "numpy", "python")
                     if k in v)
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return [
        f"Generated by `{results['command']}` on {results['created']}.",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, {m['memory_gib']} GiB{gpu} ({m['platform']}); "
        f"load average (1/5/15 min) {_load(m.get('load_average_start'))} at start, "
        f"{_load(m.get('load_average_end'))} at end. Threads: {s['threads']} (torch intra-op, onnxruntime "
        f"intra_op_num_threads), OMP_WAIT_POLICY {s['omp_wait_policy']}"
        f"{', onnxruntime spinning off' if s['omp_wait_policy'] == 'PASSIVE' else ''}. {libs}.",
        "",
        f"Each cell: median of n timed calls after {s['warmup']} warm-up call(s) (at most {s['repeats']}, at least "
        f"min(3, {s['repeats']}), stopping after {s['max_seconds']:g} s); IQR = inclusive quartiles. "
        "xRegular / xFast = reference median / subject median on the same inputs, device and measurement "
        "(higher is faster). fwd = assignment + loss forward under no_grad; fwd+bwd = forward and backward. "
        f"Peak extra = {s['memory_method']}; xBGA4 = peak extra / (B·G·A·4 bytes).",
    ]


_COLUMNS = ("measurement", "subject", "mode", "median ms", "IQR ms", "min-max ms", "n", "xRegular", "xFast",
            "peak extra MiB", "xBGA4")


def _row(r: dict) -> list[str]:
    if r["status"] != "ok":
        return [r["measurement"], r["label"], r["mode"], f"error: {r['error']}", "", "", "", "", "", "", ""]
    multiple = memory_multiple(r)
    return [r["measurement"], r["label"], r["mode"], _ms(r["median_s"]), f"{_ms(r['q1_s'])}-{_ms(r['q3_s'])}",
            f"{_ms(r['min_s'])}-{_ms(r['max_s'])}", str(r["n"]), _ratio(r.get("ratio_vs_regular")),
            _ratio(r.get("ratio_vs_fast")), _mib(r["peak_extra_bytes"]), "-" if multiple is None else f"{multiple:.1f}"]


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |"
                                                                           for row in rows]


def _case_section(records: list[dict]) -> list[str]:
    first = records[0]
    c = first["case"]
    title = (f"### {c['kind']}, B={c['batch']}, {c['image_size'][0]}x{c['image_size'][1]}, C={c['num_classes']} "
             f"({first.get('num_targets')} targets, G={first.get('max_gt')}, A={first.get('cells')}, "
             f"B·G·A·4 = {_mib(bga4_bytes(first))} MiB)")
    order = {name: i for i, name in enumerate(SUBJECTS)}
    rows = sorted(records, key=lambda r: (MEASUREMENTS.index(r["measurement"]), order[r["subject"]], r["mode"]))
    return [title, ""] + _table(_COLUMNS, [_row(r) for r in rows]) + [""]


def _targets_section(targets: list[dict]) -> list[str]:
    rows = []
    for t in targets:
        value = "-" if t["value"] is None else (f"{t['value']:.2f}x" if t["metric"] != "memory_multiple"
                                                else f"{t['value']:.1f}")
        need = f"{'>=' if t['at_least'] else '<='} {t['threshold']:g}"
        case = f"{t['kind']}, B={t['batch']}, {t['image_size'][0]}x{t['image_size'][1]}, C={t['num_classes']}"
        status = t["status"] + (f" ({t['note']})" if t.get("note") else "")
        rows.append([t["name"], case, t["mode"] or "-", value, need, status])
    return ["### Targets", ""] + _table(("target", "case", "mode", "measured", "required", "result"), rows) + [""]


def render_markdown(results: dict) -> str:
    """The markdown report of a results document (as written by ``write_outputs``): header, one table per case,
    the targets, skipped subjects. Only numbers from ``results`` appear in it."""
    lines = ["## Benchmark", ""] + _header(results) + [""]
    groups: dict[tuple, list[dict]] = {}
    for r in results["records"]:
        groups.setdefault(_case_key(r["case"]), []).append(r)
    for key in sorted(groups, key=lambda k: (k[2], k[1], k[0])):
        lines += _case_section(groups[key])
    if results.get("targets"):
        lines += _targets_section(results["targets"])
    for entry in results.get("skipped", []):
        lines.append(f"- Not run: {entry['label']} ({entry['subject']}): {entry['reason']}.")
    for entry in results.get("export_failures", []):
        lines.append(f"- ONNX export failed for {entry['key']}: {entry['error']}.")
    return "\n".join(lines).rstrip() + "\n"


def target_lines(results: dict) -> list[str]:
    """One line per target: PASS/MISS/N/A, what was measured and what is required."""
    lines = []
    for t in results.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"{t['status']:4s}  {t['name']} [{t['kind']}, B={t['batch']}, {t['image_size'][0]}px, "
                     f"mode {t['mode'] or '-'}]: {value} (need {'>=' if t['at_least'] else '<='} {t['threshold']:g})"
                     + (f" - {t['note']}" if t.get("note") else ""))
    return lines


def plot_results(results: dict, path: Path) -> Path:
    """Median time per subject (log scale), one panel per measurement, one bar group per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results["records"] if r["status"] == "ok"]
    cases = sorted({_case_key(r["case"]) for r in ok}, key=lambda k: (k[2], k[1], k[0]))
    series = sorted({(r["subject"], r["mode"]) for r in ok}, key=lambda s: (list(SUBJECTS).index(s[0]), s[1]))
    fig, axes = plt.subplots(len(MEASUREMENTS), 1, figsize=(max(8, 1.6 * len(cases) * max(1, len(series)) / 4), 9),
                             squeeze=False)
    width = 0.8 / max(1, len(series))
    for ax, measurement in zip(axes[:, 0], MEASUREMENTS):
        for i, (subject, mode) in enumerate(series):
            medians = {_case_key(r["case"]): r["median_s"] * 1e3 for r in ok
                       if r["subject"] == subject and r["mode"] == mode and r["measurement"] == measurement}
            xs = [j - 0.4 + (i + 0.5) * width for j, key in enumerate(cases) if key in medians]
            if xs:
                ax.bar(xs, [medians[key] for key in cases if key in medians], width,
                       label=f"{SUBJECTS[subject].label} ({mode})")
        ax.set_yscale("log")
        ax.set_ylabel("median ms (log)")
        ax.set_title(MEASUREMENT_LABELS[measurement])
        ax.set_xlim(-0.5, len(cases) - 0.5)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"{k[0]}\nB={k[1]} {k[2][0]}px" for k in cases])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7)
    fig.suptitle(f"yolox-export benchmark, {results['settings']['threads']} threads, {results['machine']['cpu_model']}")
    fig.tight_layout(rect=(0, 0.01 + 0.022 * ((len(labels) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(results: dict, out: Path) -> dict[str, Path]:
    """results/bench.json, bench.md (``render_markdown``) and bench.png (``plot_results``)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["markdown"].write_text(render_markdown(results))
    plot_results(results, paths["plot"])
    return paths


# ---------------------------------------------------------------------------------------------------- profiles


def torch_profile(case: Case, mode: str, measurement: str, threads: int, top: int = 15) -> str:
    """torch.profiler table (self CPU time, with memory) of one StaticYoloXLoss eager call after one warm-up."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    job = Job(case, "static", mode, threads, 1, 0, 1.0)
    step = eager_step(job, SUBJECTS["static"], make_inputs(case, "cpu"), measurement)
    step.reset()
    step.call()
    step.reset()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        step.call()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40)


def ort_profile(case: Case, onnx_path: str, threads: int, top: int = 15) -> str:
    """onnxruntime's profiler over one run (after one warm-up): time by op type, then the slowest nodes."""
    with tempfile.TemporaryDirectory() as tmp:
        spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
        session = ort_session(onnx_path, "CPUExecutionProvider", threads, None, profile_prefix=str(Path(tmp) / "ort"),
                              spinning=spinning)
        raw, gt, mask = padded_inputs(make_inputs(case, "cpu"))
        feeds = {"predictions": raw.numpy(), "targets": gt.numpy(), "target_mask": mask.numpy()}
        session.run(None, feeds)
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    run_nodes = nodes[len(nodes) // 2:]  # the second run's nodes
    return _ort_profile_text(run_nodes, top)


def _ort_profile_text(nodes: list[dict], top: int) -> str:
    total = sum(e["dur"] for e in nodes) or 1
    by_op: dict[str, list[float]] = {}
    for e in nodes:
        by_op.setdefault(e.get("args", {}).get("op_name", "?"), []).append(e["dur"])
    lines = [f"total node time {total / 1e3:.1f} ms over {len(nodes)} nodes", "", "op type          ms      %   nodes"]
    for op, durs in sorted(by_op.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"{op:14s} {sum(durs) / 1e3:7.1f} {100 * sum(durs) / total:5.1f}% {len(durs):6d}")
    lines += ["", "slowest nodes                                         ms   op           output shape"]
    for e in sorted(nodes, key=lambda e: -e["dur"])[:top]:
        args = e.get("args", {})
        shapes = args.get("output_type_shape", "")
        lines.append(f"{e['name'][:-len('_kernel_time')][:50]:50s} {e['dur'] / 1e3:7.1f}   "
                     f"{args.get('op_name', '?'):12s} {json.dumps(shapes)[:60]}")
    return "\n".join(lines)


def profile_report(items: Sequence[tuple[Case, str, str | None]], threads: int,
                   log: Callable[[str], None] = print) -> str:
    """Markdown with, per (case, mode, ONNX path): torch.profiler of StaticYoloXLoss eager (fwd, fwd+bwd) and
    onnxruntime's node profile. Runs in this process."""
    parts = ["# Profiles", "", f"{threads} threads, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'default')}; "
             "one call after one warm-up call.", ""]
    for case, mode, onnx_path in items:
        log(f"profile {case.label}, mode {mode}")
        parts += [f"## {case.label}, mode {mode}", ""]
        for measurement in MEASUREMENTS:
            parts += [f"### StaticYoloXLoss eager, {MEASUREMENT_LABELS[measurement]} (torch.profiler)", "", "```",
                      torch_profile(case, mode, measurement, threads).rstrip(), "```", ""]
        if onnx_path:
            parts += ["### ONNX graph, onnxruntime CPU (onnxruntime profiler)", "", "```",
                      ort_profile(case, onnx_path, threads), "```", ""]
    return "\n".join(parts)


def write_profiles(settings: Settings, log: Callable[[str], None] = print) -> Path:
    """DIR/profile.md (``profile_report``) for every case and mode of ``settings``, in a worker process."""
    onnx_paths, _ = export_graphs(dataclasses.replace(settings, subjects=("ort-cpu",)), log)
    items = [{"case": dataclasses.asdict(case), "mode": mode, "onnx": onnx_paths.get(onnx_key(case, mode))}
             for case in settings.cases() for mode in settings.modes]
    target = settings.out / "profile.md"
    settings.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "profile.json"
        spec.write_text(json.dumps({"threads": settings.threads, "items": items}))
        command = [sys.executable, "-m", "yolox_export.bench", "--profile", str(spec), str(target)]
        with open(Path(tmp) / "stderr", "w") as stderr:
            reason = _run_streaming(command, _worker_env(settings.threads, settings.omp_wait_policy), stderr,
                                    settings.timeout * max(1, len(items)), log)
        if reason:
            raise RuntimeError(f"profiling failed: {reason}: {_last_line((Path(tmp) / 'stderr').read_text())}")
    return target


def profile_main(argv: Sequence[str]) -> int:
    """``python -m yolox_export.bench --profile SPEC.json OUT.md``."""
    spec = json.loads(Path(argv[0]).read_text())
    warnings.simplefilter("ignore")
    items = [(Job.from_json({"case": item["case"], "subject": "static", "mode": item["mode"], "threads": 1,
                             "repeats": 1, "warmup": 0, "max_seconds": 1.0}).case, item["mode"], item["onnx"])
             for item in spec["items"]]
    report = profile_report(items, spec["threads"], lambda line: print(PROGRESS_PREFIX + line, flush=True))
    Path(argv[1]).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(profile_main(sys.argv[2:]) if sys.argv[1:2] == ["--profile"] else worker_main(sys.argv[1:]))
