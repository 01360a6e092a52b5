"""The call each subject times (a ``Step``), built on the case's inputs, along two separate paths.

* The runner path (:func:`runner_step`): the padded graph's forward through a ``runners.Runner`` opened with
  ``runners.open_runner``, the same protocol parity uses: torch.compile of the padded module (family
  ``compile``) and the exported graph under onnxruntime on every execution provider (family ``ort``; the gradient
  graph's one call is its ``fwd+bwd``). The timed call pads the case's inputs into the graph's feeds
  (``contract.graph_feeds``) and calls ``runner.run(feeds)``.
* Beside the protocol (:data:`BESIDE_THE_PROTOCOL`): what ``run(feeds) -> dict`` does not cover. The references
  and the drop-in ``StaticYoloXLoss`` on per-level predictions and ragged [N, 6] targets, forward or forward +
  backward (:func:`loss_step`), and the padded computation replayed from a CUDA graph, forward or forward +
  backward (:func:`cudagraph_step`).

Padded subjects flatten and pad inside the timed call, as the references do inside theirs. Shape legend: B batch,
A cells, G padded targets, C classes, N targets of the batch.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ..config import COMPONENT_NAMES, LossConfig
from ..export.contract import INPUT_NAMES, OUTPUT_NAMES, graph_feeds
from ..export.runners import Runner, open_runner
from ..grid import Grid, level_shapes
from ..reference import reference_for
from ..scenarios import make_scenario
from ..static import PaddedYoloXLoss, StaticYoloXLoss, padded_loss
from .settings import Case, Job
from .subjects import Subject

if TYPE_CHECKING:
    from ..export.ort_runtime import OrtRunner

_LOSS = COMPONENT_NAMES.index("Loss")


def _loss_of_outputs(outputs: Mapping[str, torch.Tensor]) -> float:
    """The total loss from a runner's outputs (``loss_components`` [6])."""
    return float(outputs["loss_components"][_LOSS])


@dataclass
class Inputs:
    """The case's head maps (per level [B, 1, H, W, 5 + C]) and targets [N, 6] on the subject's device."""

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


def make_inputs(case: Case, device: str, box_format: str = "cxcywh") -> Inputs:
    """The case's scenario on ``device``, its targets in ``box_format`` (the mode's: ``LossConfig.box_format``)."""
    scenario = make_scenario(case.kind, case.batch, case.image_size, case.num_classes, case.strides, case.seed,
                             targets_per_image=case.targets_per_image or None, box_format=box_format)
    digest = hashlib.sha1()
    for tensor in (*scenario.predictions, scenario.targets):
        digest.update(tensor.contiguous().numpy().tobytes())
    predictions = [p.to(device) for p in scenario.predictions]
    return Inputs(predictions, scenario.targets.to(device), digest.hexdigest())


def feeds_of(inputs: Inputs, max_gt: int | None = None) -> dict[str, torch.Tensor]:
    """The graph's feeds by name (``contract.graph_feeds``, unvalidated): predictions [B, A, 5 + C], targets
    [B, G, 5], target_mask [B, G], on the inputs' device."""
    return graph_feeds(inputs.predictions, inputs.targets, max_gt, validate=False)


def padded_inputs(inputs: Inputs, max_gt: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G]): :func:`feeds_of` in ``INPUT_NAMES`` order."""
    feeds = feeds_of(inputs, max_gt)
    return tuple(feeds[name] for name in INPUT_NAMES)


def padded_max_gt(inputs: Inputs) -> int:
    return int(padded_inputs(inputs)[1].shape[1])


def _config(job: Job, mode: str) -> LossConfig:
    return LossConfig(tuple(job.case.strides), job.case.num_classes, mode=mode)


# --- The runner path: the padded graph's forward, ``runner.run(feeds)`` -------------------------------------------

#: Subject family -> the ``open_runner`` backend that computes its forward.
RUNNER_BACKENDS = {"compile": "compiled", "ort": "onnxruntime"}


def ort_providers(provider: str, cache_dir: str | None) -> list:
    """onnxruntime's provider list for ``provider`` on device 0 (TensorRT falls back to CUDA for the nodes it does
    not take, its engines cached under ``cache_dir``)."""
    if provider == "CUDAExecutionProvider":
        return [(provider, {"device_id": 0})]
    if provider == "TensorrtExecutionProvider":
        trt_cache = str(Path(cache_dir or tempfile.gettempdir()) / "trt_engines")
        return [(provider, {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": trt_cache}),
                ("CUDAExecutionProvider", {"device_id": 0})]
    return [provider]


def open_ort_runner(path: str, provider: str, threads: int, cache_dir: str | None = None, spinning: bool = True,
                    profile_prefix: str | None = None) -> OrtRunner:
    """``open_runner("onnxruntime", ...)`` on ``provider`` with the benchmark's session options (``threads``
    intra-op threads, spin-waiting, optional node profiling) and no feed validation in the timed call; raises
    RuntimeError when onnxruntime does not take the provider."""
    runner = open_runner("onnxruntime", path, providers=ort_providers(provider, cache_dir), validate=False,
                         session_options={"threads": threads, "spinning": spinning, "profile_prefix": profile_prefix})
    if runner.providers[0] != provider:
        raise RuntimeError(f"onnxruntime did not take {provider}; session providers: {runner.providers}")
    return runner


def open_subject_runner(job: Job, subject: Subject, inputs: Inputs) -> Runner:
    """The runner of a runner-path subject: torch.compile(fullgraph=True, dynamic=False) of the padded module on
    the subject's device (from an empty dynamo cache, so that the setup is a whole compile), or the job's ONNX
    graph under the subject's onnxruntime provider."""
    backend = RUNNER_BACKENDS[subject.family]
    if backend == "compiled":
        torch._dynamo.reset()
        return open_runner("compiled", config=_config(job, job.mode), shapes=level_shapes(inputs.predictions),
                           device=subject.device, dynamic=False)
    if not job.onnx_path:
        raise RuntimeError("no ONNX graph for this mode (export failed or skipped)")
    return open_ort_runner(job.onnx_path, subject.provider, job.threads, job.cache_dir, spinning=job.spinning)


def runner_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """The padded graph's forward through the subject's runner: each call pads the inputs and runs
    ``runner.run(feeds)``. ``setup_s``: opening the runner, and for torch.compile the first (compiling) call.
    onnxruntime on the CPU has its memory measured on the session's first call (its arena grows then)."""
    if measurement != ("fwd+bwd" if subject.with_grad else "fwd"):
        raise ValueError(f"{subject.name}: its runner computes {subject.measurements}, not {measurement!r}")
    start = time.perf_counter()
    runner = open_subject_runner(job, subject, inputs)

    def forward():
        return runner.run(feeds_of(inputs))

    compiles = RUNNER_BACKENDS[subject.family] == "compiled"
    if compiles:
        forward()
    return Step(forward, _loss_of_outputs, setup_s=time.perf_counter() - start,
                memory_on_first_call=not compiles and subject.device == "cpu")


# --- Beside the protocol: the ragged-target call, gradients, the CUDA-graph replay ---------------------------------


def loss_step(module: torch.nn.Module, inputs: Inputs, measurement: str) -> Step:
    """A module with the references' interface (per-level predictions, [N, 6] targets): no-grad forward, or
    forward + backward to fresh leaves."""
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
    return loss_step(reference_for(_config(job, subject.reference_mode)), inputs, measurement)


def eager_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """The drop-in ``StaticYoloXLoss`` eager (with the subject's constructor options), on the ragged targets."""
    return loss_step(StaticYoloXLoss.from_config(_config(job, job.mode), **dict(subject.options)), inputs,
                     measurement)


def _padded_module(job: Job, inputs: Inputs, device: str) -> PaddedYoloXLoss:
    return PaddedYoloXLoss(_config(job, job.mode), level_shapes(inputs.predictions)).to(device).eval()


def cudagraph_step(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> Step:
    """The padded computation captured in one torch.cuda.CUDAGraph: the forward (``fwd``, outputs by name), or the
    forward and the backward to the predictions (``fwd+bwd``: (components [6], gradient [B, A, 5 + C]), the
    gradient written into a buffer of the graph's pool on every replay). Each call pads into the static inputs and
    replays."""
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
                return dict(zip(OUTPUT_NAMES, module(raw, gt, mask)))
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
    loss = (lambda out: float(out[0][_LOSS])) if backward else _loss_of_outputs
    return Step(replay, loss, setup_s=time.perf_counter() - start)


#: Subject family -> step builder for what the runner protocol does not cover.
BESIDE_THE_PROTOCOL = {"reference": reference_step, "eager": eager_step, "cudagraph": cudagraph_step}

#: Subject family -> step builder: the runner path for every family in :data:`RUNNER_BACKENDS`, the builders of
#: :data:`BESIDE_THE_PROTOCOL` for the rest.
STEP_BUILDERS = {**{family: runner_step for family in RUNNER_BACKENDS}, **BESIDE_THE_PROTOCOL}
