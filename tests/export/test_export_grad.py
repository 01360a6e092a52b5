"""The gradient graph (``export --with-grad``, ``export.grad_graph``): its checks and metadata, and under
onnxruntime its outputs, ``predictions_grad`` and ``image_loss`` included, against ``PaddedYoloXLoss(with_grad=True)``
in eager torch (autograd) on every scenario kind; non-finite in, NaN out in the gradient too.

The graph is conftest's ``grad_export`` (64x64, 3 classes, L1 on), exported once a session for the first mode, for
every mode under ``--full``. Tolerances (float32): onnxruntime's exp / log / sigmoid differ from torch's in the last
ulp, and a gradient element sums a handful of terms: rtol 1e-5, atol 1e-6 (the gradients here are 1e-3 to 1).
"""

import onnx
import pytest
import torch

from yolox_export import pad_targets
from yolox_export.export.contract import output_names
from yolox_export.export.onnx_export import validate_onnx
from yolox_export.export.runners import EagerRunner
from yolox_export.grid import flatten_levels
from yolox_export.scenarios import KINDS, make_scenario

from support import GRAD_CLASSES, GRAD_IMAGE, GRAD_SHAPES, box_format_of, grad_config

GRAD_TOL = dict(rtol=1e-5, atol=1e-6)
CELLS = sum(h * w for h, w in GRAD_SHAPES)


@pytest.fixture(scope="module")
def graph(grad_export, ort_runner):
    mode, path = grad_export
    return mode, path, ort_runner(path), EagerRunner(grad_config(mode), GRAD_SHAPES, with_grad=True)


def feeds_of(mode, kind, batch, seed, extra_slots=0):
    s = make_scenario(kind, batch_size=batch, image_size=GRAD_IMAGE, num_classes=GRAD_CLASSES, seed=seed,
                      box_format=box_format_of(mode))
    gt, mask = pad_targets(s.targets, batch)
    gt = torch.cat((gt, torch.zeros(batch, extra_slots, 5)), 1)  # masked padding slots beyond the largest count
    mask = torch.cat((mask, torch.zeros(batch, extra_slots, dtype=torch.bool)), 1)
    return {"predictions": flatten_levels(s.predictions), "targets": gt, "target_mask": mask}


def test_gradient_graph_passes_every_check(graph):
    # onnx.checker, no forbidden op, every node accepted by TensorRT's parser table, batch and G symbolic
    _, path, _, _ = graph
    result = validate_onnx(path)
    assert result.ok, result.problems()


def test_metadata_and_outputs(graph):
    mode, path, runner, _ = graph
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["mode"] == mode and meta["with_grad"] == "True" and meta["with_targets"] == "False"
    assert meta["outputs"] == ",".join(output_names(with_grad=True))
    assert runner.output_names == output_names(with_grad=True)
    grad = model.graph.output[-1]
    dims = [d.dim_param or d.dim_value for d in grad.type.tensor_type.shape.dim]
    assert grad.name == "predictions_grad" and dims[1:] == [CELLS, 5 + GRAD_CLASSES] and isinstance(dims[0], str)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch,extra_slots", ((2, 0), (3, 4)))
def test_onnxruntime_equals_eager_autograd(graph, kind, batch, extra_slots):
    mode, _, runner, eager = graph
    feeds = feeds_of(mode, kind, batch, seed=10 * batch + KINDS.index(kind), extra_slots=extra_slots)
    got, want = runner.run(feeds), eager.run(feeds)
    assert list(got) == list(want)
    assert torch.equal(got["fg_mask"], want["fg_mask"]) and torch.equal(got["matched_gt"], want["matched_gt"]), kind
    torch.testing.assert_close(got["loss_components"], want["loss_components"], rtol=1e-5, atol=1e-6, msg=kind)
    torch.testing.assert_close(got["image_loss"], want["image_loss"], rtol=1e-5, atol=1e-6, msg=kind)
    torch.testing.assert_close(got["image_loss"].sum(), got["loss_components"][5], rtol=1e-5, atol=0, msg=kind)
    torch.testing.assert_close(got["predictions_grad"], want["predictions_grad"], **GRAD_TOL, msg=kind)


def test_image_loss_follows_a_permutation_of_the_images(graph):
    mode, _, runner, _ = graph
    feeds = feeds_of(mode, "coco", 4, seed=5)
    order = torch.tensor([3, 1, 0, 2])
    got = runner.run(feeds)
    permuted = runner.run({name: value[order] for name, value in feeds.items()})
    torch.testing.assert_close(permuted["image_loss"], got["image_loss"][order], rtol=1e-5, atol=0)
    torch.testing.assert_close(permuted["predictions_grad"], got["predictions_grad"][order], **GRAD_TOL)


@pytest.mark.parametrize("bad", ("nan prediction", "inf prediction", "class out of range", "negative width",
                                 "more targets than G"))
def test_bad_input_makes_the_whole_gradient_nan(graph, bad):
    mode, _, runner, eager = graph
    feeds = feeds_of(mode, "coco", 2, seed=7)
    if bad == "nan prediction":
        feeds["predictions"][1, 5, 7] = float("nan")
    elif bad == "inf prediction":
        feeds["predictions"][0, 0, 2] = float("inf")
    elif bad in ("class out of range", "negative width"):
        column, value = (0, float(GRAD_CLASSES)) if bad == "class out of range" else (3, -4.0)  # w, or x2 < x1
        feeds["targets"][0, 0, column] = value
        assert feeds["target_mask"][0, 0]
    else:  # pad_targets without validation marks the image's last slot as a real slot of NaN
        s = make_scenario("crowded", batch_size=2, image_size=GRAD_IMAGE, num_classes=GRAD_CLASSES, seed=7,
                          box_format=box_format_of(mode))
        gt, mask = pad_targets(s.targets, 2, max_gt=2, validate=False)
        feeds = {"predictions": flatten_levels(s.predictions), "targets": gt, "target_mask": mask}
    for out in (runner.run(feeds), eager.run(feeds)):
        assert out["predictions_grad"].isnan().all(), bad
        assert out["image_loss"].isnan().all() and out["loss_components"][5].isnan(), bad


def test_batch_and_targets_stay_dynamic_and_the_empty_batch_runs(graph):
    _, _, runner, eager = graph
    for batch, slots in ((0, 1), (1, 1), (5, 30)):
        feeds = {"predictions": torch.randn(batch, CELLS, 5 + GRAD_CLASSES, generator=torch.Generator().manual_seed(1)),
                 "targets": torch.zeros(batch, slots, 5), "target_mask": torch.zeros(batch, slots, dtype=torch.bool)}
        got, want = runner.run(feeds), eager.run(feeds)
        assert got["predictions_grad"].shape == (batch, CELLS, 5 + GRAD_CLASSES) and got["image_loss"].shape == (batch,)
        torch.testing.assert_close(got["predictions_grad"], want["predictions_grad"], **GRAD_TOL)
