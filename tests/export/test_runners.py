"""The runner protocol (``export.runners``): ``CompiledRunner`` (torch.compile of the padded module, fullgraph) gives
EagerRunner's outputs (in support's ``COMPILED_MODES``, every mode under --full), with one graph for changing B and G; ``open_runner`` knows every backend and
names what is missing. onnxruntime's runner is tested in test_ort_runtime.py and against the exported graph in
test_export_onnx.py."""

from __future__ import annotations

import pytest
import torch

from yolox_export.config import LossConfig
from yolox_export.export.contract import graph_feeds, output_names
from yolox_export.export.runners import BACKENDS, CompiledRunner, EagerRunner, Runner, open_runner
from yolox_export.grid import level_shapes
from yolox_export.scenarios import make_scenario

from support import box_format_of, contract_feeds

STRIDES, CLASSES = (8, 16, 32), 4


def _batches(mode="regular"):
    """Two padded batches of one grid (64 x 64: A = 84) with different B and G, targets in ``mode``'s format."""
    box_format = box_format_of(mode)
    small = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=CLASSES, seed=0, box_format=box_format)
    large = make_scenario("coco", batch_size=3, image_size=(64, 64), num_classes=CLASSES, seed=1, box_format=box_format)
    feeds = [graph_feeds(s.predictions, s.targets, validate=False) for s in (small, large)]
    assert feeds[0]["targets"].shape[:2] != feeds[1]["targets"].shape[:2]  # B and G both change
    return level_shapes(small.predictions), feeds


def _assert_same_outputs(got: dict, want: dict) -> None:
    assert list(got) == list(want) == list(output_names())
    for name in ("fg_mask", "matched_gt"):
        assert torch.equal(got[name], want[name]), name
    # float32: inductor fuses and reorders sums, so equality is to float32 rounding
    for name in ("matched_iou", "loss_components"):
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)


#: Inductor with dynamic B and G costs 10 to 35 s of compilation per mode on 2 cores; AOT autograd's eager backend
#: runs the same dynamo graph with the same symbolic shapes. Inductor's arithmetic in every mode is checked by
#: tests/static/test_compile.py on the drop-in.
COMPILE_BACKEND = "aot_eager"


def test_compiled_runner_equals_eager_runner(compiled_mode):
    mode = compiled_mode
    torch._dynamo.reset()
    shapes, batches = _batches(mode)
    config = LossConfig(STRIDES, CLASSES, mode=mode)
    compiled = open_runner("compiled", config=config, shapes=shapes, compile_backend=COMPILE_BACKEND)
    eager = open_runner("eager", config=config, shapes=shapes)
    assert isinstance(compiled, CompiledRunner) and isinstance(compiled, Runner)
    for feeds in batches:
        _assert_same_outputs(compiled.run(feeds), eager.run(feeds))


def test_compiled_runner_is_one_graph_for_changing_batch_and_targets(compiled_mode):
    """B = 2, G = 10, then B = 3, G = 8, then the first again: one frame (B and G marked dynamic)."""
    from torch._dynamo.testing import CompileCounter

    mode = compiled_mode
    torch._dynamo.reset()
    counter = CompileCounter()
    shapes, batches = _batches(mode)
    runner = CompiledRunner(LossConfig(STRIDES, CLASSES, mode=mode), shapes, compile_backend=counter)
    for feeds in (*batches, batches[0]):
        runner.run(feeds)
    assert counter.frame_count == 1


def test_compiled_runner_with_targets_and_without_gradients():
    torch._dynamo.reset()
    from torch._dynamo.testing import CompileCounter

    shapes, batches = _batches()
    config = LossConfig(STRIDES, CLASSES, mode="fast")
    feeds = {name: t.requires_grad_(t.is_floating_point()) for name, t in batches[0].items()}
    got = CompiledRunner(config, shapes, with_targets=True, compile_backend=CompileCounter()).run(feeds)
    want = EagerRunner(config, shapes, with_targets=True).run(feeds)
    assert list(got) == list(want) == list(output_names(with_targets=True))
    assert not any(t.requires_grad for t in got.values())  # run() is under no_grad, as every runner


def test_open_runner_knows_every_backend_and_names_what_is_missing(tmp_path):
    assert BACKENDS == ("eager", "compiled", "onnxruntime", "tensorrt")
    config = LossConfig(STRIDES, CLASSES)
    for backend in ("eager", "compiled"):
        with pytest.raises(ValueError, match=f"backend '{backend}' needs config and shapes"):
            open_runner(backend, config=config)
    for backend in ("onnxruntime", "tensorrt"):
        with pytest.raises(ValueError, match=f"backend '{backend}' needs a file path"):
            open_runner(backend)
    with pytest.raises(ValueError, match="unknown backend 'torchscript'"):
        open_runner("torchscript", tmp_path / "x")
    with pytest.raises(TypeError, match="dynamic must be a bool"):
        open_runner("compiled", config=config, shapes=[(8, 8), (4, 4), (2, 2)], dynamic="yes")


def test_runners_name_missing_feeds():
    shapes, batches = _batches()
    feeds = dict(batches[0])
    del feeds["target_mask"]
    for runner in (EagerRunner(LossConfig(STRIDES, CLASSES), shapes),
                   CompiledRunner(LossConfig(STRIDES, CLASSES), shapes, compile_backend="eager")):
        with pytest.raises(ValueError, match=r"missing \['target_mask'\]"):
            runner.run(feeds)


def test_eager_runner_checks_its_feeds_against_the_contract():
    shapes = [(8, 8), (4, 4), (2, 2)]
    runner = EagerRunner(LossConfig(STRIDES, CLASSES), shapes)
    with pytest.raises(ValueError, match=r"'targets' has G = 0 target slots"):
        runner.run(contract_feeds(2, 0, 84, CLASSES))
    with pytest.raises(ValueError, match=r"'predictions': expected shape \[B, A, 5 \+ C\] = \['\?', 84, 9\]"):
        runner.run(contract_feeds(2, 3, 80, CLASSES))
    feeds = contract_feeds(2, 3, 84, CLASSES)
    feeds["target_mask"] = feeds["target_mask"].float()
    with pytest.raises(TypeError, match="'target_mask': expected dtype torch.bool"):
        runner.run(feeds)
    feeds = contract_feeds(2, 3, 84, CLASSES)
    feeds["targets"] = feeds["targets"][:1]
    with pytest.raises(ValueError, match="disagree on the batch size"):
        runner.run(feeds)
    empty = runner.run(contract_feeds(0, 3, 84, CLASSES))  # B = 0: a defined, empty result
    assert empty["fg_mask"].shape == (0, 84) and empty["loss_components"].tolist() == [0, 0, 0, 0, 1, 0]
