"""One protocol for every backend that computes the padded graph's outputs: ``run(feeds) -> dict[str, Tensor]``.

Feeds and outputs are named as in ``contract`` (``contract.output_names``: ``OUTPUT_NAMES``, with targets
``TARGET_OUTPUT_NAMES``, with the gradient ``GRAD_OUTPUT_NAMES``), with the same dtypes for every backend: float32
/ bool inputs; bool, int64 and float32 outputs. Feeds: ``predictions`` [B, A, 5 + C], ``targets`` [B, G, 5],
``target_mask`` [B, G]; outputs ``fg_mask`` / ``matched_gt`` / ``matched_iou`` [B, A], ``loss_components`` [6],
``image_loss`` [B], the per-target audit ``target_k`` / ``target_cells`` int64 [B, G] (0 at masked slots; from
every backend, ``contract.AUDIT_OUTPUT_NAMES``) (and ``predictions_grad`` [B, A, 5 + C] from a graph exported with
it). Shape legend: B batch, A cells, G padded targets, C classes.

Backends (:data:`BACKENDS`): :class:`EagerRunner` runs ``PaddedYoloXLoss`` in eager torch, :class:`CompiledRunner`
the same module under ``torch.compile(fullgraph=True)``, ``ort_runtime.OrtRunner`` the ONNX file under onnxruntime
(CPU tensors out; CUDA tensors in and out on a CUDA session), ``tensorrt.TensorRTRunner`` a TensorRT engine (CUDA
tensors out). Parity, the benchmark and the GPU check open them through :func:`open_runner`, so that every backend
is treated alike. What the protocol does not cover (gradients, a training step, a CUDA-graph replay, the drop-in's
ragged-target call) is not a runner: see ``StaticYoloXLoss`` and ``bench.steps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from ..config import LossConfig, check_flag
from ..static import PaddedYoloXLoss
from .contract import INPUT_NAMES, check_feeds, output_names

#: Backends that compute the padded graph's outputs. "eager" and "compiled" need a configuration and the levels'
#: shapes; "onnxruntime" an ONNX file; "tensorrt" an engine file.
BACKENDS = ("eager", "compiled", "onnxruntime", "tensorrt")


@runtime_checkable
class Runner(Protocol):
    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Outputs by name for one run on the feeds named ``INPUT_NAMES``."""


class EagerRunner:
    """``PaddedYoloXLoss(config, shapes)`` in eager torch, under ``torch.no_grad``, behind the runner protocol.

    Args:
        config: the loss configuration.
        shapes: the levels' (H, W), in stride order; they fix A.
        with_targets: also return ``TARGET_OUTPUT_NAMES``.
        device: where the module's grid lives; feeds must be on the same device.
        with_grad: also return ``predictions_grad`` (autograd inside the module's forward).
    """

    def __init__(self, config: LossConfig, shapes: Sequence[tuple[int, int]], with_targets: bool = False,
                 device: str | torch.device = "cpu", with_grad: bool = False):
        self.module = PaddedYoloXLoss(config, shapes, with_targets=with_targets, with_grad=with_grad).to(device).eval()
        self.output_names = output_names(with_targets, with_grad)

    def _call(self, feeds: Mapping[str, Tensor]):
        return self.module(*self._ordered(feeds))

    def _ordered(self, feeds: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """The feeds in ``INPUT_NAMES`` order, checked against the contract (``contract.check_feeds``)."""
        check_feeds(feeds, self.module.num_cells, self.module.config.num_classes)
        return tuple(feeds[name] for name in INPUT_NAMES)

    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        with torch.no_grad():
            outputs = self._call(feeds)
        return dict(zip(self.output_names, outputs))


class CompiledRunner(EagerRunner):
    """``torch.compile(PaddedYoloXLoss(config, shapes), fullgraph=True)`` behind the runner protocol.

    The first :meth:`run` compiles (a graph break raises). With ``dynamic=True`` (the default) every run marks B
    (axis 0 of every feed) and G (axis 1 of ``targets`` and ``target_mask``) dynamic before dynamo guards on them
    (``maybe_mark_dynamic``, as ``StaticYoloXLoss`` marks N), so one compiled graph serves every batch size and
    padded target count, while the configuration's Python numbers stay constants. ``dynamic=False`` specialises on
    the shapes of each new call (``torch.compile(dynamic=False)``), as the benchmark times it. ``compile_backend``
    is torch.compile's backend (default inductor). Arguments otherwise as :class:`EagerRunner`.
    """

    def __init__(self, config: LossConfig, shapes: Sequence[tuple[int, int]], with_targets: bool = False,
                 device: str | torch.device = "cpu", dynamic: bool = True, compile_backend: str | Any = "inductor"):
        super().__init__(config, shapes, with_targets=with_targets, device=device)
        self.dynamic = check_flag("dynamic", dynamic)
        self.compiled = torch.compile(self.module, fullgraph=True, dynamic=None if dynamic else False,
                                      backend=compile_backend)

    def _call(self, feeds: Mapping[str, Tensor]):
        predictions, targets, target_mask = self._ordered(feeds)
        if self.dynamic:
            for tensor, axes in ((predictions, (0,)), (targets, (0, 1)), (target_mask, (0, 1))):
                for axis in axes:
                    if axis < tensor.dim():
                        torch._dynamo.maybe_mark_dynamic(tensor, axis)
        return self.compiled(predictions, targets, target_mask)


def open_runner(backend: str, path: str | Path | None = None, config: LossConfig | None = None,
                shapes: Sequence[tuple[int, int]] | None = None, **options: Any) -> Runner:
    """A runner of ``backend`` (one of :data:`BACKENDS`).

    "eager" and "compiled" need ``config`` and the levels' ``shapes``; "onnxruntime" an ONNX file ``path``;
    "tensorrt" an engine ``path``. ``options`` go to the runner's constructor: ``with_targets`` and ``device``
    (eager, compiled), ``with_grad`` (eager), ``dynamic`` and ``compile_backend`` (compiled), ``providers``,
    ``validate`` and ``session_options`` (onnxruntime: see ``ort_runtime.OrtRunner``). onnxruntime and TensorRT
    are imported here, not when this module is.

    Raises:
        ValueError: an unknown backend or a missing argument.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if backend in ("eager", "compiled"):
        if config is None or shapes is None:
            raise ValueError(f"backend {backend!r} needs config and shapes")
        runner = EagerRunner if backend == "eager" else CompiledRunner
        return runner(config, shapes, **options)
    if path is None:
        raise ValueError(f"backend {backend!r} needs a file path")
    if backend == "onnxruntime":
        from .ort_runtime import OrtRunner

        return OrtRunner(path, **options)
    from .tensorrt import TensorRTRunner

    return TensorRTRunner(path, **options)
