"""The benchmark: a tiny configuration end to end through scripts/bench.py, the markdown renderer on a hand-made
results document, target evaluation and option errors. Nothing here asserts on timings."""

import json
from pathlib import Path

import pytest
import torch

from yolox_export import bench

from support import load_script

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--kinds", "coco", "--batch", "1", "--image-size", "128", "--num-classes", "5", "--repeats", "1",
        "--modes", "regular", "--subjects", "regular", "fast", "static", "ort-cpu", "--one-process"]
TINY_SUBJECTS = ("regular", "fast", "static", "ort-cpu")




@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = load_script("bench").main(TINY + ["--out", str(out)])
    return code, out


def test_tiny_run_writes_json_markdown_and_plot_with_every_subject(tiny_run):
    code, out = tiny_run
    assert code == 0
    results = json.loads((out / "bench.json").read_text())
    markdown = (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 0
    assert {r["subject"] for r in results["records"]} == set(TINY_SUBJECTS)
    for record in results["records"]:
        assert record["status"] == "ok", record["error"]
        assert record["n"] == 1 and record["median_s"] > 0
        assert record["peak_extra_bytes"] is not None
        assert record["case"]["image_size"] == [128, 128]
    assert len({r["inputs_sha1"] for r in results["records"]}) == 1  # every subject saw the same inputs
    for name in TINY_SUBJECTS:
        assert bench.SUBJECTS[name].label in markdown
    from yolox_export.files import MARKDOWN_MARKER

    assert markdown == f"{MARKDOWN_MARKER}\n" + bench.render_markdown(results)  # the marker, then the table


def test_tiny_run_records_machine_versions_and_guards_cuda(tiny_run):
    _, out = tiny_run
    results = json.loads((out / "bench.json").read_text())
    assert results["machine"]["cpu_model"] and results["machine"]["usable_cores"] >= 1
    for library in ("python", "torch", "onnx", "onnxruntime", "numpy"):
        assert library in results["versions"]
    assert results["settings"]["threads"] == 2
    skipped = {entry["subject"] for entry in results["skipped"]}
    assert {r["subject"] for r in results["records"]}.isdisjoint(skipped)
    if not torch.cuda.is_available():
        assert results["skipped"] == []  # only CPU subjects were asked for
        assert bench.unavailable_reason(bench.SUBJECTS["static-cudagraph"]).startswith("no CUDA device")


def record(subject, median, kind="coco", mode=None, measurement="fwd", peak=None, status="ok"):
    info = bench.SUBJECTS[subject]
    return {"case": {"kind": kind, "batch": 2, "image_size": [64, 64], "num_classes": 3, "seed": 0,
                     "strides": [8, 16, 32]},
            "subject": subject, "label": info.label, "family": info.family, "mode": mode or info.reference_mode,
            "device": info.device, "measurement": measurement, "status": status,
            "error": None if status == "ok" else "RuntimeError: boom", "times_s": [median], "n": 1,
            "median_s": median, "q1_s": median, "q3_s": median, "min_s": median, "max_s": median,
            "peak_extra_bytes": peak, "num_targets": 5, "max_gt": 4, "cells": 84}


def hand_made_results():
    records = [record("regular", 0.5), record("fast", 0.1), record("ort-cpu", 0.02, mode="regular", peak=2 * 2688),
               record("ort-cpu", 0.025, mode="fast", peak=20 * 2688),
               record("static-compile", 0.01, mode="fast", status="error")]
    bench.add_ratios(records)
    return {"created": "2026-01-01T00:00:00+00:00", "command": "python scripts/bench.py --hand-made",
            "machine": {"cpu_model": "Test CPU 9000", "usable_cores": 4, "memory_gib": 8.0, "gpu": None,
                        "platform": "TestOS", "load_average_start": [0.5, 0.4, 0.3], "load_average_end": [1, 1, 1]},
            "versions": {"torch": "9.9", "onnxruntime": "8.8", "python": "3.99"},
            "settings": {"threads": 2, "warmup": 1, "repeats": 5, "max_seconds": 60.0, "omp_wait_policy": "PASSIVE",
                         "memory_method": "test method"},
            "skipped": [{"subject": "ort-cuda", "label": "ONNX graph, onnxruntime CUDA", "reason": "no CUDA device"}],
            "records": records, "targets": bench.evaluate_targets(records)}


def test_render_markdown_from_hand_made_results():
    results = hand_made_results()
    markdown = bench.render_markdown(results)
    assert "Test CPU 9000" in markdown and "torch 9.9" in markdown and "onnxruntime 8.8" in markdown
    assert "### coco, B=2, 64x64, C=3 (5 targets, G=4, A=84" in markdown
    # ORT regular: 0.5 / 0.02 = 25x Regular, 0.1 / 0.02 = 5x Fast; memory 2 x B·G·A·4
    assert "| fwd | ONNX graph, onnxruntime CPU | regular | 20.0 | 20.0-20.0 | 20.0-20.0 | 1 | 25.00x | 5.00x |" \
           in markdown
    assert "| 2.0 |" in markdown.split("regular | 20.0")[1].splitlines()[0]
    assert "error: RuntimeError: boom" in markdown
    assert "Not run: ONNX graph, onnxruntime CUDA (ort-cuda): no CUDA device." in markdown
    assert "| ORT graph vs FastYoloXLoss, assign+loss forward | coco, B=2, 64x64, C=3 | fast | 4.00x | >= 3 | PASS |" \
           in markdown
    assert "| ORT graph vs RegularYoloXLoss, assign+loss forward | coco, B=2, 64x64, C=3 | regular | 25.00x | >= 10 " \
           "| PASS |" in markdown


def test_targets_pass_miss_and_not_measured():
    targets = {(t["name"], t["kind"]): t for t in hand_made_results()["targets"]}
    assert {t["kind"] for t in targets.values()} == {"coco"}  # no crowded records: no crowded targets
    memory = targets[("Peak extra memory, ORT graph (x B·G·A·4 bytes)", "coco")]
    assert memory["status"] == "MISS" and memory["value"] == pytest.approx(20.0) and memory["mode"] == "fast"
    compiled = targets[("StaticYoloXLoss torch.compile vs FastYoloXLoss, assign+loss forward", "coco")]
    assert compiled["status"] == "N/A" and "boom" in compiled["note"]
    eager = targets[("StaticYoloXLoss eager vs RegularYoloXLoss, forward+backward", "coco")]
    assert eager["status"] == "N/A" and eager["note"] == "not measured"
    lines = bench.target_lines(hand_made_results())
    assert any(line.startswith("PASS") and "ORT graph vs RegularYoloXLoss" in line for line in lines)


def test_summarise_quartiles():
    stats = bench.summarise([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (stats["median_s"], stats["q1_s"], stats["q3_s"], stats["min_s"], stats["max_s"], stats["n"]) == \
           (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    assert bench.summarise([])["median_s"] is None


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--kinds", "nope"], ["--image-size", "100"],
                                  ["--subjects", "nope"], ["--threads", "0"], ["--modes", "slow"]])
def test_bad_options_print_one_line_and_exit_2(argv, capsys):
    script = load_script("bench")
    try:
        code = script.main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_growth_preset_and_targets_per_image():
    from yolox_export.bench.growth import growth_table
    from yolox_export.bench.settings import make_settings

    settings = make_settings("growth", batches=(2,), image_sizes=(64,), targets_per_image=(3, 7))
    cases = settings.cases()
    assert [c.targets_per_image for c in cases] == [3, 7] and settings.modes == ("megvii",)
    from yolox_export.bench.steps import make_inputs

    inputs = make_inputs(cases[1], "cpu")
    assert inputs.targets.shape[0] == 2 * 7  # exactly 7 targets in each of the 2 images
    record = {"case": {"image_size": [64, 64], "targets_per_image": 7}, "status": "ok", "subject": "static",
              "mode": "megvii", "measurement": "fwd", "median_s": 0.012, "peak_extra_bytes": 3 * 2**20}
    table = growth_table([record])
    assert table[0] == "### Growth with G and image size" and "| 64 | 7 | - | 12.0 / 3 | - | - |" in table
    with pytest.raises(ValueError, match="targets_per_image"):
        make_settings("growth", targets_per_image=(-1,))


def test_megvii_targets_are_data():
    from yolox_export.bench.targets import TARGETS, predictions_multiple

    megvii = [t for t in TARGETS if t.mode == "megvii"]
    assert {(t.kind, t.subject, t.measurement, t.metric, t.threshold) for t in megvii} == {
        ("coco", "ort-cpu", "fwd", "ratio_vs_megvii", 5.0), ("crowded", "ort-cpu", "fwd", "ratio_vs_megvii", 10.0),
        ("coco", "static", "fwd+bwd", "ratio_vs_megvii", 3.0), ("coco", "ort-cpu", "fwd", "predictions_multiple", 1.0)}
    # predictions of B=2, A=10, C=3: 2 * 10 * 8 * 4 = 640 bytes
    assert predictions_multiple({"peak_extra_bytes": 320, "cells": 10, "case": {"batch": 2, "num_classes": 3}}) == 0.5


def test_the_gradient_graph_subject_times_forward_and_gradient_in_one_call(grad_export):
    from support import GRAD_CLASSES, GRAD_IMAGE, box_format_of
    from yolox_export.bench.settings import Case, Job
    from yolox_export.bench.steps import make_inputs, runner_step

    mode, path = grad_export
    subject = bench.SUBJECTS["ort-cpu-grad"]
    assert subject.family == "ort" and subject.with_grad and subject.measurements == ("fwd+bwd",)
    case = Case("coco", 2, GRAD_IMAGE, GRAD_CLASSES)
    job = Job(case, subject.name, mode, threads=1, repeats=1, warmup=0, max_seconds=1.0, onnx_path=str(path))
    inputs = make_inputs(case, "cpu", box_format_of(mode))
    step = runner_step(job, subject, inputs, "fwd+bwd")
    out = step.call()
    assert out["predictions_grad"].shape == (2, case.cells, 5 + GRAD_CLASSES) and step.loss(out) > 0
    with pytest.raises(ValueError, match="fwd"):
        runner_step(job, subject, inputs, "fwd")


def test_onnx_keys_cover_the_gradient_graph_only_for_its_subject():
    from yolox_export.bench.run import onnx_keys
    from yolox_export.bench.settings import make_settings

    forward = make_settings("quick", subjects=("ort-cpu",), modes=("fast",), kinds=("coco",))
    both = make_settings("quick", subjects=("ort-cpu", "ort-cpu-grad"), modes=("fast",), kinds=("coco",))
    assert [key[-2:] for key in onnx_keys(forward)] == [(False, True)]  # (with_grad, with_audit)
    assert [key[-2:] for key in onnx_keys(both)] == [(False, True), (True, True)]
    audit_cost = make_settings("quick", subjects=("ort-cpu", "ort-cpu-noaudit"), modes=("fast",), kinds=("coco",))
    assert [key[-2:] for key in onnx_keys(audit_cost)] == [(False, False), (False, True)]
    subject = bench.SUBJECTS["ort-cpu-noaudit"]
    assert subject.family == "ort" and not subject.with_audit and subject.measurements == ("fwd",)


@pytest.mark.parametrize("overrides, message", [(dict(batches=(99999999,)), "over 4096"),
                                                (dict(num_classes=10**9), "over 2147483647")])
def test_sizes_beyond_the_graphs_limits_are_refused(overrides, message):
    from yolox_export.bench.settings import make_settings

    with pytest.raises(ValueError, match=message):
        make_settings("quick", **overrides)
