"""export/grad_graph.py: the gradient graph's trace (forward and backward as ATen ops, before the exporter), run in
torch: it equals ``PaddedYoloXLoss(with_grad=True)`` (eager autograd) at batch and target counts other than the
trace's, takes the export-safe forms, passes the NaN poison into the gradient, and keeps a fixed G's chunks.

The default suite traces the first mode of ``config.MODES`` (about 4 s a trace); ``--full`` every mode, and the
fixed-G trace. The
exported ONNX graph itself is tested in tests/export/test_export_grad.py (under ``--full``). Tolerances as there:
the trace computes the export-safe forms (a BCE written out, a log1p from Log), eager torch's kernels.
"""

import pytest
import torch

from yolox_export import PaddedYoloXLoss, pad_targets
from yolox_export.export.contract import INPUT_NAMES, output_names
from yolox_export.export.grad_graph import traced_with_grad
from yolox_export.export.onnx_export import example_inputs
from yolox_export.export.runners import EagerRunner
from yolox_export.grid import flatten_levels
from yolox_export.scenarios import make_scenario

from support import GRAD_CLASSES, GRAD_IMAGE, GRAD_SHAPES, box_format_of, grad_config

GRAD_TOL = dict(rtol=1e-5, atol=1e-6)
DYNAMIC = [(0,), (0, 1), (0, 1)]  # predictions: B; targets and target_mask: B and G


@pytest.fixture(scope="module")
def traced(trace_mode):
    config = grad_config(trace_mode)
    module = PaddedYoloXLoss(config, GRAD_SHAPES, with_grad=True).eval()
    graph = traced_with_grad(module, example_inputs(config, module.num_cells), DYNAMIC)
    return trace_mode, graph, EagerRunner(config, GRAD_SHAPES, with_grad=True)


def run(graph, feeds):
    return dict(zip(output_names(with_grad=True), graph(*(feeds[name] for name in INPUT_NAMES))))


def feeds_of(mode, kind, batch, seed):
    s = make_scenario(kind, batch_size=batch, image_size=GRAD_IMAGE, num_classes=GRAD_CLASSES, seed=seed,
                      box_format=box_format_of(mode))
    gt, mask = pad_targets(s.targets, batch)
    return {"predictions": flatten_levels(s.predictions), "targets": gt, "target_mask": mask}


@pytest.mark.parametrize("kind,batch", (("coco", 1), ("crowded", 3), ("sparse", 5), ("empty", 2)))
def test_the_trace_equals_eager_autograd_at_other_sizes(traced, kind, batch):
    mode, graph, eager = traced
    feeds = feeds_of(mode, kind, batch, seed=batch)
    got, want = run(graph, feeds), eager.run(feeds)
    assert torch.equal(got["fg_mask"], want["fg_mask"]) and torch.equal(got["matched_gt"], want["matched_gt"])
    torch.testing.assert_close(got["loss_components"], want["loss_components"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["image_loss"], want["image_loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["predictions_grad"], want["predictions_grad"], **GRAD_TOL)


def test_the_trace_takes_the_export_safe_forms(traced):
    # the trace runs outside torch.onnx.export: without export_form() it records the eager forms (measured: torch's
    # sigmoid and log1p, the logits' split, and autograd's scatter-add for the gather's backward) and not the
    # padded backward of terms.columns
    _, graph, _ = traced
    ops = {str(node.target) for node in graph.graph.nodes if node.op == "call_function"}
    for eager_only in ("aten.sigmoid.default", "aten.log1p.default", "aten.split_with_sizes.default",
                       "aten.scatter_add.default"):
        assert eager_only not in ops, eager_only
    assert "aten.constant_pad_nd.default" in ops


def test_a_nan_prediction_makes_the_traced_gradient_nan_everywhere(traced):
    mode, graph, _ = traced
    feeds = feeds_of(mode, "coco", 2, seed=4)
    feeds["predictions"][1, 3, 6] = float("nan")
    out = run(graph, feeds)
    assert out["predictions_grad"].isnan().all() and out["image_loss"].isnan().all()


def test_a_fixed_g_stays_static_and_keeps_its_chunks(trace_mode, full):
    if not full:
        pytest.skip("two more traces (about 5 s): runs under --full")
    config = grad_config(trace_mode)
    topk = []
    for per_chunk in (None, 2):
        module = PaddedYoloXLoss(config, GRAD_SHAPES, with_grad=True, targets_per_chunk=per_chunk).eval()
        graph = traced_with_grad(module, example_inputs(config, module.num_cells, max_gt=6), [(0,), (0,), (0,)])
        topk.append(sum(str(node.target) == "aten.topk.default" for node in graph.graph.nodes))
    assert topk[1] == 3 * topk[0] > 0  # G = 6 in chunks of 2: each chunk's selection unrolled
