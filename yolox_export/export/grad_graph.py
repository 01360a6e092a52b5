"""The gradient graph: the padded loss's forward and backward traced into one graph that exports to ONNX.

``PaddedYoloXLoss(with_grad=True)`` computes d loss / d predictions with ``torch.autograd.grad`` inside its
``forward``. torch.export (behind the dynamo ONNX exporter) does not trace a call to ``torch.autograd.grad``, so
:func:`traced_with_grad` traces the module first with ``make_fx``: core ATen decompositions, on fake inputs whose
batch (and G, unless it is fixed) are symbolic and whose other sizes are static, so that the forward and the
autograd backward are recorded together as plain ATen ops (custom autograd Functions' backward included:
``poison_gradients``' NaN, ``terms.gather_rows``' scatter). The exporter then exports that graph as it exports the
forward-only module (``onnx_export.exported_model``), with the same dynamic axes.

The trace runs outside ``torch.onnx.export``, so it runs inside ``export_form.export_form()``: the functions with
an export-safe form (``static.export_form.exporting``) take it here exactly as under the exporter. A static G (the
fixed-G export) stays a Python int in the trace, so the chunked assignment is unrolled as it is under the exporter.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..static.export_form import export_form


def traced_with_grad(module: torch.nn.Module, inputs: Sequence[torch.Tensor],
                     dynamic_axes: Sequence[Sequence[int]]) -> torch.fx.GraphModule:
    """``module`` (``PaddedYoloXLoss(with_grad=True)``) traced on ``inputs`` into one ATen graph of forward and
    backward; ``dynamic_axes[i]`` are the axes of ``inputs[i]`` that stay symbolic (the example sizes there must be
    at least 2, or they are specialised). The module's buffers (the grid) become the graph's constants."""
    from torch._decomp import core_aten_decompositions
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    fake_mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    fakes = []
    for tensor, axes in zip(inputs, dynamic_axes):
        sizes = [DimDynamic.DYNAMIC if axis in axes else DimDynamic.STATIC for axis in range(tensor.dim())]
        fakes.append(fake_mode.from_tensor(tensor, symbolic_context=StatelessSymbolicContext(dynamic_sizes=sizes)))
    with export_form(), fake_mode:
        graph = make_fx(module, decomposition_table=core_aten_decompositions())(*fakes)
    return graph.eval()
