"""An export with G fixed and the assignment in chunks of targets (``export_onnx(..., targets_per_chunk=N)``,
``export --targets-per-chunk N --max-gt G:G:G``): valid for TensorRT's parser, batch still dynamic, the same outputs
as eager under onnxruntime; refused without a fixed max_gt."""

import json
from pathlib import Path

import pytest
import torch

from yolox_export import LossConfig
from yolox_export.cli import main
from yolox_export.export.contract import graph_feeds
from yolox_export.export.onnx_export import export_onnx, validate_onnx
from yolox_export.export.presets import Preset
from yolox_export.export.runners import open_runner
from yolox_export.scenarios import make_scenario

from support import CHUNKED_G as G, chunked_graph


def test_fixed_g_chunked_export_is_valid_and_equals_eager(exported_graph):
    pytest.importorskip("onnxruntime")
    path = chunked_graph(exported_graph)
    stages = json.loads(Path(str(path) + ".stages.json").read_text())  # what export_onnx reported, in order
    assert stages == [[s, d, 1] for s in ("trace and convert to ONNX", "fold constants", "save") for d in (0, 1)]
    validation = validate_onnx(path)
    assert validation.ok, validation.problems()
    runner = open_runner("onnxruntime", path, providers=["CPUExecutionProvider"])
    specs = {spec.name: spec.shape for spec in runner.input_specs}
    assert isinstance(specs["targets"][0], str) and specs["targets"][1] == G  # B dynamic, G fixed
    eager = open_runner("eager", config=LossConfig((8, 16, 32), 3, mode="fast"), shapes=[(8, 8), (4, 4), (2, 2)])
    for batch in (3, 1):
        scenario = make_scenario("crowded", batch_size=batch, image_size=(64, 64), num_classes=3, seed=batch)
        keep = torch.cat([torch.nonzero(scenario.targets[:, 0] == b).flatten()[:G] for b in range(batch)])
        feeds = graph_feeds(scenario.predictions, scenario.targets[keep], max_gt=G)
        got, want = runner.run(feeds), eager.run(feeds)
        assert torch.equal(got["fg_mask"], want["fg_mask"]) and torch.equal(got["matched_gt"], want["matched_gt"])
        torch.testing.assert_close(got["loss_components"], want["loss_components"], rtol=1e-5, atol=1e-6)


def test_chunks_need_a_fixed_max_gt(tmp_path, capsys):
    preset = Preset(name="dynamic", image_size=(64, 64), strides=(8, 16, 32), num_classes=3, mode="fast",
                    batch=(1, 2, 4), max_gt=(1, 8, 16), opset=20)
    with pytest.raises(ValueError, match="targets_per_chunk needs a fixed max_gt"):
        export_onnx(preset, tmp_path / "x.onnx", targets_per_chunk=4)
    assert main(["export", "--preset", "yolox_nano", "--targets-per-chunk", "4", "--output",
                 str(tmp_path / "y.onnx")]) == 2
    assert "--targets-per-chunk needs a fixed max_gt" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()
