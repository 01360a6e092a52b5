"""The exported graph: validation, forbidden-op detection, metadata, dynamic axes, and onnxruntime parity with
eager at two batch / max_gt sizes on fresh seeded inputs of every scenario kind.

The graph is the one the onnxruntime tests share (conftest's ``shared_export``: 128x160, strides 8, 16, 32,
6 classes, with targets and L1), exported once a session per mode."""

from pathlib import Path

import onnx
import pytest
import torch

from yolox_export import PaddedYoloXLoss, pad_targets
from yolox_export.export.contract import AUDIT_OUTPUT_NAMES, OUTPUT_NAMES, TARGET_OUTPUT_NAMES, graph_feeds
from yolox_export.export.onnx_export import level_shapes_for, validate_onnx
from yolox_export.export.runners import EagerRunner, Runner, open_runner
from yolox_export.export.trt_compat import find_forbidden_ops
from yolox_export.grid import flatten_levels
from yolox_export.scenarios import KINDS, make_scenario

from support import SHARED_CLASSES, box_format_of, load_script, shared_config, shared_preset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(shared_export):
    mode, path = shared_export
    return shared_preset(mode), path


def test_exported_graph_passes_every_check(exported):
    _, path = exported
    result = validate_onnx(path)
    assert result.ok, result.problems()


def test_metadata_and_io(exported):
    preset, path = exported
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["mode"] == preset.mode and meta["num_classes"] == str(SHARED_CLASSES) and meta["strides"] == "8,16,32"
    assert meta["use_l1"] == "True" and meta["with_targets"] == "True" and meta["image_size"] == "128x160"
    radius = "1.5" if preset.mode == "megvii" else "2.5"  # the radius the mode's centre test really uses
    assert meta["center_sampling_radius"] == radius and meta["dynamic_ks_bias"] == "1.1" and "yolox_export.version" in meta
    assert [i.name for i in model.graph.input] == ["predictions", "targets", "target_mask"]
    assert [o.name for o in model.graph.output][:4] == ["fg_mask", "matched_gt", "matched_iou", "loss_components"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch,max_gt", ((2, 250), (5, 210)))
def test_onnxruntime_equals_eager(exported, ort_runner, batch, max_gt, kind):
    preset, path = exported
    runner = ort_runner(path)
    module = PaddedYoloXLoss(shared_config(preset.mode), level_shapes_for(preset), with_targets=True)
    s = make_scenario(kind, batch_size=batch, image_size=preset.image_size, num_classes=SHARED_CLASSES,
                      seed=100 * batch + KINDS.index(kind), box_format=box_format_of(preset.mode))
    raw = flatten_levels(s.predictions)
    gt, mask = pad_targets(s.targets, batch, max_gt)
    got = {k: torch.as_tensor(v) for k, v in runner.run({"predictions": raw, "targets": gt, "target_mask": mask}).items()}
    want = dict(zip(("fg_mask", "matched_gt", "matched_iou", "loss_components"), module(raw, gt, mask)))
    differs = (got["fg_mask"] != want["fg_mask"]) | (got["matched_gt"] != want["matched_gt"])
    assert not differs.any(), f"{kind}: {int(differs.sum())} cells differ"
    same = ~differs
    torch.testing.assert_close(got["matched_iou"][same], want["matched_iou"][same], rtol=0, atol=1e-5, msg=kind)
    torch.testing.assert_close(got["loss_components"], want["loss_components"], rtol=1e-5, atol=1e-6, msg=kind)


def test_a_planted_nonzero_is_caught(tmp_path):
    class Leaky(torch.nn.Module):
        def forward(self, x):
            return torch.nonzero(x > 0)

    program = torch.onnx.export(Leaky(), (torch.randn(4, 3),), dynamo=True)
    path = tmp_path / "leaky.onnx"
    onnx.save(program.model_proto, str(path))
    assert any("NonZero" in p for p in find_forbidden_ops(onnx.load(str(path))))
    assert not validate_onnx(path).ok


@pytest.mark.parametrize("argv", (["--preset", "missing.toml"], ["--engine", "x.engine", "--output", "unused.onnx"]))
def test_script_stops_with_exit_code_2(argv, capsys):
    export_script = load_script("export")

    assert export_script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


@pytest.mark.parametrize("argv", (["--batch", "3:2:1"], ["--num-classes", "many"], ["--mode", "slow"]))
def test_script_bad_option_values_are_one_line_errors(argv, capsys):
    export_script = load_script("export")

    with pytest.raises(SystemExit) as stop:
        export_script.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


@pytest.mark.parametrize("kind", ("empty", "sparse", "fitted"))
def test_every_runner_has_the_same_outputs_names_and_dtypes(exported, kind):
    # the runner protocol: run(feeds) -> dict[str, Tensor], same names and dtypes whatever the backend; graph_feeds
    # pads G to at least 1 (an empty batch is one masked slot per image), which the graph accepts
    preset, path = exported
    s = make_scenario(kind, batch_size=2, image_size=preset.image_size, num_classes=SHARED_CLASSES, seed=3)
    feeds = graph_feeds(s.predictions, s.targets)
    if kind == "empty":
        assert feeds["targets"].shape[1] == 1 and not feeds["target_mask"].any()
    eager = EagerRunner(shared_config(preset.mode), level_shapes_for(preset), with_targets=True)
    ort = open_runner("onnxruntime", path)
    assert isinstance(eager, Runner) and isinstance(ort, Runner)
    want, got = eager.run(feeds), ort.run(feeds)
    assert list(got) == list(want) == list(OUTPUT_NAMES + TARGET_OUTPUT_NAMES + AUDIT_OUTPUT_NAMES)
    for name in want:
        assert isinstance(got[name], torch.Tensor) and got[name].dtype == want[name].dtype, name
    assert torch.equal(got["fg_mask"], want["fg_mask"]) and torch.equal(got["matched_gt"], want["matched_gt"])
