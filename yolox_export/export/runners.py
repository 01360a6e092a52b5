"""One protocol for every backend that runs the exported graph: ``run(feeds) -> dict[str, Tensor]``.

Feeds and outputs are named as in ``contract`` (``INPUT_NAMES``, ``OUTPUT_NAMES`` and, with targets,
``TARGET_OUTPUT_NAMES``), with the same dtypes for every backend: float32 / bool inputs; bool, int64 and float32
outputs. :class:`EagerRunner` runs ``PaddedYoloXLoss`` in eager torch, ``ort_runtime.OrtRunner`` the ONNX file
under onnxruntime (CPU tensors out), ``tensorrt.TensorRTRunner`` a TensorRT engine (CUDA tensors out). Parity and
the tools open them through :func:`open_runner`, so that every backend is treated alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from ..config import LossConfig
from ..static import PaddedYoloXLoss
from .contract import INPUT_NAMES, OUTPUT_NAMES, TARGET_OUTPUT_NAMES

#: Backends that run an exported artifact, and what each needs.
BACKENDS = ("eager", "onnxruntime", "tensorrt")


@runtime_checkable
class Runner(Protocol):
    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Outputs by name for one run on the feeds named ``INPUT_NAMES``."""


class EagerRunner:
    """``PaddedYoloXLoss(config, shapes)`` in eager torch, under ``torch.no_grad``, behind the runner protocol."""

    def __init__(self, config: LossConfig, shapes: Sequence[tuple[int, int]], with_targets: bool = False):
        self.module = PaddedYoloXLoss(config, shapes, with_targets=with_targets).eval()
        self.output_names = OUTPUT_NAMES + (TARGET_OUTPUT_NAMES if with_targets else ())

    def run(self, feeds: Mapping[str, Tensor]) -> dict[str, Tensor]:
        missing = [name for name in INPUT_NAMES if name not in feeds]
        if missing:
            raise ValueError(f"inputs are {list(INPUT_NAMES)}: missing {missing}")
        with torch.no_grad():
            outputs = self.module(*(feeds[name] for name in INPUT_NAMES))
        return dict(zip(self.output_names, outputs))


def open_runner(backend: str, path: str | Path | None = None, config: LossConfig | None = None,
                shapes: Sequence[tuple[int, int]] | None = None) -> Runner:
    """A runner of ``backend``: "eager" needs ``config`` and the levels' ``shapes``; "onnxruntime" an ONNX file
    ``path``; "tensorrt" an engine ``path``. Raises ValueError for an unknown backend or a missing argument."""
    if backend == "eager":
        if config is None or shapes is None:
            raise ValueError("backend 'eager' needs config and shapes")
        return EagerRunner(config, shapes)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if path is None:
        raise ValueError(f"backend {backend!r} needs a file path")
    if backend == "onnxruntime":
        from .ort_runtime import OrtRunner

        return OrtRunner(path)
    from .tensorrt import TensorRTRunner

    return TensorRTRunner(path)
