"""The one switch between the static graph's eager form and its export-safe form, and the export-safe slices.

Some functions of the static loss have two forms with the same values: the eager one (torch's own kernels, fewer
copies) and one that exports to ONNX ops that every runtime and TensorRT's parser read alike (a BCE written out, a
NaN-propagating "is finite" without ReduceMax, plain slices instead of a Split). They ask :func:`exporting`.

It is True inside ``torch.onnx.export`` and inside :func:`export_form`, the context manager that a trace made
outside the exporter sets: the gradient graph is traced with ``make_fx`` first (``export.grad_graph``), where
``torch.onnx.is_in_onnx_export()`` is False, so without the context manager the eager forms would reach the graph
(an ``amax`` became a ReduceMax, which drops NaN in onnxruntime 1.32). The state is a counter local to this module,
restored when the context exits (also on an exception); nothing else is changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

_depth = 0


def exporting() -> bool:
    """True where the export-safe form must be used: inside ``torch.onnx.export`` or inside :func:`export_form`."""
    return _depth > 0 or torch.onnx.is_in_onnx_export()


@contextlib.contextmanager
def export_form() -> Iterator[None]:
    """Within this context :func:`exporting` is True (contexts nest)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


class _Columns(torch.autograd.Function):
    """``values[..., start:stop]`` whose backward pads (see ``columns``)."""

    @staticmethod
    def forward(ctx, values: Tensor, start: int, stop: int) -> Tensor:
        ctx.pads = (start, values.shape[-1] - stop)
        return values[..., start:stop]

    @staticmethod
    def backward(ctx, grad: Tensor):
        return F.pad(grad, ctx.pads), None, None


def columns(values: Tensor, start: int, stop: int) -> Tensor:
    """``values[..., start:stop]`` (a copy), with a backward that pads the slice's gradient with zeros on the last
    axis (one Pad in the gradient graph, ``export.grad_graph``). Autograd's own backward of a slice is a
    ``slice_scatter``, which the ONNX exporter writes as a Transpose of the whole [B, A, 5 + C] gradient, a
    ScatterND and a Transpose back (what that costs: docs/training-graph.md)."""
    return _Columns.apply(values, start, stop)


def split_outputs(raw: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(box [B, A, 4], objectness [B, A, 1], class [B, A, C]) logits of raw [B, A, 5 + C].

    One ``split`` in eager, so that backward assembles the [B, A, 5 + C] gradient once rather than zero-filling and
    adding one full-size tensor per slice; plain slices under ONNX export, where a split becomes a sequence op that
    TensorRT's parser lacks (``columns``: their backward pads). The values are the same either way."""
    if exporting():
        width = raw.shape[-1]
        return columns(raw, 0, 4), columns(raw, 4, 5), columns(raw, 5, width)
    return raw.split((4, 1, num_classes), dim=-1)
