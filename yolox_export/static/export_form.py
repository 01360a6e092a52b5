"""The one switch between the static graph's eager form and its export-safe form.

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
