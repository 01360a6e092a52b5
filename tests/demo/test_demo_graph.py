"""Training from the exported gradient graph (``demo.graph_train``): at every step the graph's loss and gradient on
the eager run's own predictions equal eager autograd to float32 rounding (the parity layer's tolerances: loss
1e-5 relative, gradient 1e-4 of the largest |gradient|), the graph run trains from ``predictions_grad`` alone, and
the JSON and table are written.

The graph is conftest's ``grad_export`` (64x64, 3 classes, L1 on), which these settings match.
"""

import json

from yolox_export.config import COMPONENT_NAMES
from yolox_export.demo import graph_report
from yolox_export.demo.graph_train import GRAD_TOLERANCE, LOSS_TOLERANCE, run_graph_demo
from yolox_export.demo.train import DemoSettings

from support import GRAD_CLASSES, GRAD_IMAGE

SETTINGS = DemoSettings(steps=3, batch_size=4, image_size=GRAD_IMAGE[0], dataset_size=16, num_classes=GRAD_CLASSES,
                        use_l1=True)


def test_graph_loss_and_gradient_equal_eager_autograd_at_every_step(grad_export, tmp_path):
    mode, path = grad_export
    result = run_graph_demo(SETTINGS, [mode], onnx_paths={mode: path})
    run = result.runs[mode]
    assert result.export_seconds == {}  # the given graph was used
    assert len(run.eager.components) == len(run.graph.components) == len(run.loss_gap) == SETTINGS.steps
    assert run.cells == [0] * SETTINGS.steps and run.compared_steps == list(range(SETTINGS.steps))
    assert max(run.loss_gap) <= LOSS_TOLERANCE and max(run.grad_gap) <= GRAD_TOLERANCE, (run.loss_gap, run.grad_gap)
    assert run.within_rounding
    # step 0: both runs start from the same weights on the same batch, so the graph run's loss is the same-input one
    total = COMPONENT_NAMES.index("Loss")
    first_eager, first_graph = run.eager.components[0][total], run.graph.components[0][total]
    assert abs(first_graph - first_eager) <= LOSS_TOLERANCE * abs(first_eager)
    assert run.weight_gap > 0  # the graph run's optimiser stepped on predictions_grad, not on eager's gradient
    data = graph_report.to_dict(result)
    written = json.loads(graph_report.write_json(result, tmp_path).read_text())
    assert written == json.loads(json.dumps(data)) and written["modes"][mode]["within_rounding"] is True
    assert graph_report.format_table(data).splitlines()[1].startswith(mode)
