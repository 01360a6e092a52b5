"""The gradient graph: the padded loss's forward and backward traced into one graph that exports to ONNX.

``PaddedYoloXLoss(with_grad=True)`` computes d loss / d predictions with ``torch.autograd.grad`` inside its
``forward``. torch.export (behind the dynamo ONNX exporter) does not trace a call to ``torch.autograd.grad``, so
:func:`traced_with_grad` traces the module first with ``make_fx``: core ATen decompositions, symbolic shapes (the
batch and G stay symbolic), the forward and the autograd backward recorded together as plain ATen ops (custom
autograd Functions' backward included: ``poison_gradients``' NaN, ``terms.gather_rows``' scatter). The exporter
then exports that graph as it exports the forward-only module (``onnx_export.exported_model``).

The trace runs outside ``torch.onnx.export``, so it runs inside ``export_form.export_form()``: the functions with
an export-safe form (``static.export_form.exporting``) take it here exactly as under the exporter.
"""

from __future__ import annotations

import torch

from ..static.export_form import export_form


def traced_with_grad(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """``module`` (``PaddedYoloXLoss(with_grad=True)``) traced on ``inputs`` (sizes >= 2 and distinct per axis, so
    that no axis is specialised or unified with another) into one ATen graph of forward and backward. The module's
    buffers (the grid) become the graph's constants."""
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    with export_form():
        graph = make_fx(module, decomposition_table=core_aten_decompositions(), tracing_mode="symbolic",
                        _allow_non_fake_inputs=True)(*inputs)
    return graph.eval()
