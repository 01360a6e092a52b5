"""The call each subject times (a ``Step``), built on the case's inputs: references and the static module eager
(forward, or forward + backward), torch.compile, a CUDA graph, the exported graph under onnxruntime. Padded
subjects flatten and pad inside the timed call, as the references do inside theirs."""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import COMPONENT_NAMES, LossConfig
from ..export.contract import INPUT_NAMES, OUTPUT_NAMES, graph_feeds
from ..export.ort_runtime import ort_session
from ..grid import Grid, level_shapes
from ..parity.scenarios import make_scenario
from ..reference import reference_for
from ..static import PaddedYoloXLoss, StaticYoloXLoss, padded_loss
from .settings import Case, Job
from .subjects import Subject


def _loss_of_outputs(outputs) -> float:
    """The total loss from a graph's outputs in ``OUTPUT_NAMES`` order."""
    return float(outputs[OUTPUT_NAMES.index("loss_components")][COMPONENT_NAMES.index("Loss")])


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
    scenario = make_scenario(case.kind, case.batch, case.image_size, case.num_classes, case.strides, case.seed,
                             targets_per_image=case.targets_per_image or None)
    digest = hashlib.sha1()
    for tensor in (*scenario.predictions, scenario.targets):
        digest.update(tensor.contiguous().numpy().tobytes())
    predictions = [p.to(device) for p in scenario.predictions]
    return Inputs(predictions, scenario.targets.to(device), digest.hexdigest())


def padded_inputs(inputs: Inputs, max_gt: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G]), the graph's inputs (``contract.graph_feeds``)."""
    feeds = graph_feeds(inputs.predictions, inputs.targets, max_gt, validate=False)
    return tuple(feeds[name] for name in INPUT_NAMES)


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


def _config(job: Job, mode: str) -> LossConfig:
    return LossConfig(tuple(job.case.strides), job.case.num_classes, mode=mode)


def reference_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    return loss_step(reference_for(_config(job, subject.reference_mode)), inputs, measurement)


def eager_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    return loss_step(StaticYoloXLoss.from_config(_config(job, job.mode)), inputs, measurement)


def _padded_module(job: Job, inputs: Inputs, device: str) -> PaddedYoloXLoss:
    return PaddedYoloXLoss(_config(job, job.mode), level_shapes(inputs.predictions)).to(device).eval()


def compile_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """torch.compile(fullgraph=True, dynamic=False) of the padded module; compiled by the first call (setup_s)."""
    torch._dynamo.reset()
    compiled = torch.compile(_padded_module(job, inputs, subject.device), fullgraph=True, dynamic=False)

    def forward():
        with torch.no_grad():
            return compiled(*padded_inputs(inputs))
    start = time.perf_counter()
    forward()
    return Step(forward, _loss_of_outputs, setup_s=time.perf_counter() - start)


def cudagraph_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """The padded computation captured in one torch.cuda.CUDAGraph: the forward (``fwd``), or the forward and the
    backward to the predictions (``fwd+bwd``, the gradient written into a buffer of the graph's pool on every
    replay). Each call pads into the static inputs and replays."""
    start = time.perf_counter()
    module = _padded_module(job, inputs, "cuda")
    raw, gt, mask = (t.clone() for t in padded_inputs(inputs))
    max_gt = int(gt.shape[1])
    backward = measurement == "fwd+bwd"
    raw.requires_grad_(backward)
    grid = Grid(module.x_shifts, module.y_shifts, module.strides)

    def computation():
        if not backward:
            with torch.no_grad():
                return module(raw, gt, mask)
        raw.grad = None
        out = padded_loss(raw, gt, mask, grid, module.config)
        out.loss.backward()
        return out.components, raw.grad

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            computation()
    torch.cuda.current_stream().wait_stream(side)
    raw.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = computation()

    def replay():
        with torch.no_grad():
            for target, source in zip((raw, gt, mask), padded_inputs(inputs, max_gt)):
                target.copy_(source)
        graph.replay()
        return outputs
    torch.cuda.synchronize()
    loss = (lambda out: float(out[0][COMPONENT_NAMES.index("Loss")])) if backward else _loss_of_outputs
    return Step(replay, loss, setup_s=time.perf_counter() - start)


def bench_session(path: str, provider: str, threads: int, cache_dir: str | None, profile_prefix: str | None = None,
                  spinning: bool = True):
    """``ort_runtime.ort_session`` on ``provider`` (TensorRT falls back to CUDA for nodes it does not take); raises
    RuntimeError when onnxruntime does not take the provider."""
    providers: list = [provider]
    if provider == "CUDAExecutionProvider":
        providers = [(provider, {"device_id": 0})]
    elif provider == "TensorrtExecutionProvider":
        trt_cache = str(Path(cache_dir or tempfile.gettempdir()) / "trt_engines")
        providers = [(provider, {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": trt_cache}),
                     ("CUDAExecutionProvider", {"device_id": 0})]
    session = ort_session(path, providers, threads=threads, spinning=spinning, profile_prefix=profile_prefix)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"onnxruntime did not take {provider}; session providers: {session.get_providers()}")
    return session


def ort_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    if not job.onnx_path:
        raise RuntimeError("no ONNX graph for this mode (export failed or skipped)")
    start = time.perf_counter()
    session = bench_session(job.onnx_path, subject.provider, job.threads, job.cache_dir, spinning=job.spinning)
    setup = time.perf_counter() - start
    if subject.device == "cpu":
        def run_cpu():
            raw, gt, mask = padded_inputs(inputs)
            return session.run(None, dict(zip(INPUT_NAMES, (raw.numpy(), gt.numpy(), mask.numpy()))))
        return Step(run_cpu, _loss_of_outputs, setup_s=setup, memory_on_first_call=True)
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

    return Step(run_cuda, lambda out: _loss_of_outputs(out.copy_outputs_to_cpu()), setup_s=setup)


STEP_BUILDERS = {"reference": reference_step, "eager": eager_step, "compile": compile_step,
                 "cudagraph": cudagraph_step, "ort": ort_step}
