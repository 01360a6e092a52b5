"""scripts/parity.py: recorded batches, the built-in suite, JSON, plots, exit codes and one-line input errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import yolox_export.parity.comparison as parity
import yolox_export.parity.run as parity_cli
import yolox_export.parity.runtimes as parity_runtimes
import yolox_export.parity.suite as parity_suite
from yolox_export import StaticYoloXLoss
from yolox_export.parity.suite import DEFAULT_MODES
from yolox_export.parity import ParityReport
from yolox_export.scenarios import KINDS, make_scenario

from support import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "parity.py"
SMALL = ["--image-size", "128", "128", "--num-classes", "4"]




script = load_script("parity")


def record(path, kind="fitted", seed=0, image_size=(128, 128), num_classes=4, box_format="cxcywh", **changes):
    s = make_scenario(kind, batch_size=2, image_size=image_size, num_classes=num_classes, seed=seed,
                      box_format=box_format)
    data = {"predictions": s.predictions, "targets": s.targets, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    torch.save(data, path)
    return str(path)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_recorded_batch_passes_and_prints_the_table(tmp_path, capsys):
    path = record(tmp_path / "step.pt")
    assert script.main(["--recorded", path]) == 0
    out = capsys.readouterr().out
    assert "1 recorded batch(es), 4 classes" in out  # num_classes inferred from 5 + C
    for mode in DEFAULT_MODES:  # the modes of (cx, cy, w, h) targets
        assert f"parity ({mode} mode, 1 batches)" in out
    assert "needed" in out and "tol" in out and "static       matched_gt" in out
    assert out.rstrip().endswith(f"overall: PASS ({', '.join(f'{mode} PASS' for mode in DEFAULT_MODES)})")


def test_a_recorded_mmdet_batch_is_compared_in_mmdet_mode_alone(tmp_path, capsys):
    path = record(tmp_path / "step.pt", box_format="xyxy")  # (x1, y1, x2, y2) targets
    assert script.main(["--recorded", path, "--modes", "mmdet"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("overall: PASS (mmdet PASS)")
    assert script.main(["--recorded", path, "--modes", "regular", "mmdet"]) == 2
    assert "recorded targets are in one box format" in capsys.readouterr().err


def test_json_holds_a_report_per_mode(tmp_path, capsys):
    paths = [record(tmp_path / f"step{i}.pt", seed=i) for i in range(2)]
    out = tmp_path / "out" / "parity.json"
    assert script.main(["--recorded", *paths, "--modes", "fast", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["passed"] is True and data["batches"] == ["step0.pt", "step1.pt"]
    assert list(data["reports"]) == ["fast"]
    report = ParityReport.from_dict(data["reports"]["fast"])
    assert report.mode == "fast" and report.batches == 2 and report
    assert parity_cli.load_reports(out)["fast"].rows == report.rows
    assert str(report) in capsys.readouterr().out


def test_suite_options(capsys):
    argv = ["--kinds", "fitted", "sparse", "--seeds", "1", "--batch-size", "1", *SMALL, "--modes", "regular"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 seeded batches (2 kind(s) x 1 seed(s); B=1, 128x128), 4 classes, strides 8/16/32" in out


def test_default_suite_layout():
    batches = parity_suite.build_suite(image_size=(64, 64), num_classes=2)
    labels = [b.label for b in batches]
    assert labels.count("crowded seed 0") == 1 and "crowded seed 1" not in labels
    assert len(batches) == 2 * len(KINDS) - 1
    assert all(b.batch_size == 2 for b in batches)


def test_plot_writes_pngs_for_tie_differences(tmp_path, capsys):
    path = record(tmp_path / "fresh.pt", kind="fresh", image_size=(160, 160))
    plots = tmp_path / "plots"
    assert script.main(["--recorded", path, "--modes", "fast", "--plot", str(plots)]) == 0
    files = sorted(plots.glob("*.png"))
    assert files, capsys.readouterr().out
    assert all(f.name.startswith("fast_static_batch000_image") for f in files)
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    out = capsys.readouterr().out
    assert f"wrote {len(files)} plot(s)" in out and "explained by ties, 0 real" in out


def test_a_failing_subject_exits_1_and_plots_real_mismatches(tmp_path, monkeypatch, capsys):
    planted = lambda config: StaticYoloXLoss(config.strides, config.num_classes, mode=config.mode,  # noqa: E731
                                             center_sampling_radius=3.5)
    monkeypatch.setattr(parity, "static_for", planted)
    path = record(tmp_path / "step.pt")
    plots = tmp_path / "plots"
    rc = script.main(["--recorded", path, "--modes", "regular", "--plot", str(plots), "--json", str(tmp_path / "r.json")])
    assert rc == 1
    out = capsys.readouterr().out
    assert "overall: FAIL (regular FAIL)" in out
    assert list(plots.glob("regular_static_batch000_image*.png"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False
    assert any(not d["explained"] for d in data["reports"]["regular"]["differences"])


def test_missing_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nope.pt"
    run = subprocess.run([sys.executable, str(SCRIPT), "--recorded", str(missing)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 2
    assert one_error_line(run.stderr) == f"error: {missing}: no such file"
    assert run.stdout == ""


@pytest.mark.parametrize("case, message", [
    ("no_targets", "missing key(s) ['targets']"),
    ("no_keys", "missing key(s) ['predictions', 'targets']"),
    ("not_a_dict", "holds a list"),
    ("predictions_tensor", "model_output must be a list of per-level tensors"),
    ("targets_list", "'targets' is a list"),
    ("targets_shape", "targets must be [N, 6]"),
    ("class_out_of_range", "class id 7.0"),
    ("levels", "got 2 prediction levels for 3 strides"),
    ("not_torch", "torch.load cannot read it"),
])
def test_malformed_recordings_exit_2(tmp_path, capsys, case, message):
    path = tmp_path / f"{case}.pt"
    s = make_scenario("fitted", batch_size=2, image_size=(128, 128), num_classes=4, seed=0)
    bad_class = s.targets.clone()
    bad_class[0, 1] = 7
    content = {
        "no_targets": {"predictions": s.predictions},
        "no_keys": {"preds": s.predictions},
        "not_a_dict": [s.predictions, s.targets],
        "predictions_tensor": {"predictions": s.predictions[0], "targets": s.targets},
        "targets_list": {"predictions": s.predictions, "targets": s.targets.tolist()},
        "targets_shape": {"predictions": s.predictions, "targets": s.targets[:, :5]},
        "class_out_of_range": {"predictions": s.predictions, "targets": bad_class},
        "levels": {"predictions": s.predictions[:2], "targets": s.targets},
    }.get(case)
    if content is None:
        path.write_text("not a torch file")
    else:
        torch.save(content, path)
    assert script.main(["--recorded", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and message in line


@pytest.mark.parametrize("argv, message", [
    (["--subjects", "onnxruntime"], "needs --onnx PATH"),
    (["--subjects", "tensorrt"], "needs --engine PATH"),
    (["--kinds", "fresh"], "cannot be used with --recorded"),
    (["--num-classes", "5"], "expected 5 + num_classes = 10"),
    (["--strides", "8", "16"], "got 3 prediction levels for 2 strides"),
])
def test_usage_errors_exit_2(tmp_path, capsys, argv, message):
    assert script.main(["--recorded", record(tmp_path / "step.pt"), *argv]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_suite_size_must_fit_the_strides(capsys):
    assert script.main(["--image-size", "100", "100", "--seeds", "1"]) == 2
    assert "not divisible by stride(s) [8, 16, 32]" in one_error_line(capsys.readouterr().err)


def test_tensorrt_unavailable_is_one_line(tmp_path, capsys):
    from yolox_export.export.tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is usable here")
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"")
    assert script.main(["--recorded", record(tmp_path / "step.pt"), "--modes", "fast", "--subjects", "tensorrt",
                        "--engine", str(engine)]) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: subject tensorrt: {reason}"


def test_onnx_of_another_mode_is_rejected(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnx

    from yolox_export.export.onnx_export import metadata
    from yolox_export import LossConfig

    # a stand-in graph carrying the metadata of a regular-mode export: only its metadata is read before rejecting it
    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    config = LossConfig((8, 16, 32), 4, mode="regular")
    for key, value in metadata(config, parity_runtimes._preset(config, (128, 128)), False).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "regular.onnx"
    onnx.save(model, str(path))
    argv = ["--recorded", record(tmp_path / "step.pt"), "--onnx", str(path)]
    assert script.main([*argv, "--modes", "fast"]) == 2
    assert "has mode 'regular'; this run compares mode(s) ['fast']" in one_error_line(capsys.readouterr().err)
    assert script.main([*argv, "--modes", "regular", "fast"]) == 2
    assert "no --onnx file for mode(s) ['fast']" in one_error_line(capsys.readouterr().err)
    small = ["--recorded", record(tmp_path / "small.pt", image_size=(64, 64)), "--onnx", str(path)]
    assert script.main([*small, "--modes", "regular"]) == 2
    assert "image_size is '128x128', the run needs '64x64'" in one_error_line(capsys.readouterr().err)


def test_export_on_the_fly_runs_onnxruntime(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = record(tmp_path / "step.pt", image_size=(64, 64))
    assert script.main(["--recorded", path, "--modes", "fast", "--export", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "exported the fast-mode graph" in out and "onnxruntime  matched_gt" in out
    rows = json.loads((tmp_path / "r.json").read_text())["reports"]["fast"]["rows"]
    assert {r["subject"] for r in rows} == {"static", "onnxruntime"}


def test_with_grad_needs_export(tmp_path, capsys):
    path = record(tmp_path / "step.pt")
    assert script.main(["--recorded", path, "--with-grad"]) == 2
    assert "--with-grad is an option of --export" in one_error_line(capsys.readouterr().err)


def test_onnx_alone_reads_mode_size_classes_and_strides_from_the_graph(exported_graph, capsys):
    pytest.importorskip("onnxruntime")
    from support import shared_config, shared_preset

    # the suite's shared fast graph (128x160, 6 classes, L1 and training targets): none of the defaults
    path = str(exported_graph(shared_preset("fast"), shared_config("fast"), with_targets=True))
    assert script.main(["--onnx", path, "--kinds", "fitted", "sparse", "--seeds", "1", "--no-gradients"]) == 0
    out = capsys.readouterr().out
    assert "B=2, 128x160), 6 classes, strides 8/16/32; subjects: static, onnxruntime" in out
    assert out.rstrip().endswith("overall: PASS (fast PASS)")
    for flag, message in ((["--num-classes", "80"], "num_classes is '6', the run needs '80'"),
                          (["--image-size", "64", "64"], "image_size is '128x160', the run needs '64x64'"),
                          (["--modes", "regular"], "has mode 'fast'; this run compares mode(s) ['regular']"),
                          (["--strides", "8", "16"], "strides is '8,16,32', the run needs '8,16'")):
        assert script.main(["--onnx", path, "--kinds", "fitted", "--seeds", "1", *flag]) == 2
        assert message in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("content", [b"", b"ab", None])
def test_onnx_that_is_not_a_graph_of_this_tool_is_one_line(tmp_path, capsys, content):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "g.onnx"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert script.main(["--onnx", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and ("metadata lacks" in line or "not an ONNX model" in line or "not a regular" in line)


def test_a_fixed_g_graph_compares_the_batches_that_fit_and_names_the_rest(exported_graph, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from support import chunked_graph

    path = str(chunked_graph(exported_graph))  # fast mode, 64x64, 3 classes, G fixed at 12 (chunks of 5)
    json_path = tmp_path / "r.json"
    argv = ["--onnx", path, "--kinds", "sparse", "crowded", "--seeds", "1", "--no-gradients", "--json", str(json_path)]
    assert script.main(argv) == 0  # sparse: 0-3 targets per image fit; crowded: 100-200 do not
    out = capsys.readouterr().out
    assert "batch(es) not compared: an image holds more targets than the graph's fixed G = 12" in out
    assert "crowded seed 0 (up to" in out and "parity (fast mode, 1 batches)" in out
    skipped = json.loads(json_path.read_text())["skipped"]["fast"]
    assert len(skipped) == 1 and skipped[0].startswith("crowded seed 0 (up to")
    assert script.main(["--onnx", path, "--kinds", "crowded", "--seeds", "1"]) == 2  # nothing fits: refused
    line = one_error_line(capsys.readouterr().err)
    assert "its G is fixed at 12 targets per image" in line and "crowded seed 0" in line


def test_export_prints_no_path_that_it_deletes(tmp_path, monkeypatch, capsys):
    lines = []
    calls = []

    def fake_export(preset, target, config=None):
        calls.append(target)
        return target

    import yolox_export.export.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    monkeypatch.setattr(parity_runtimes, "_require_onnxruntime", lambda: None)
    from yolox_export import LossConfig

    configs = {"fast": LossConfig((8, 16, 32), 3, mode="fast")}
    parity_runtimes.export_graphs(["fast"], configs, (64, 64), tmp_path, log=lines.append)
    assert calls and not any(str(tmp_path) in line for line in lines) and "temporary folder, removed" in lines[0]


@pytest.mark.parametrize("argv", [["--batch-size", "100000"], ["--image-size", "100000", "100000"],
                                  ["--num-classes", "1000000000"]])
def test_a_suite_beyond_the_graphs_element_limit_is_one_line(argv, capsys):
    assert script.main(argv) == 2
    assert "over 2147483647" in one_error_line(capsys.readouterr().err)
