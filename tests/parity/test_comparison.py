"""The parity report: a planted semantic bug is a real mismatch, pure ties are explained, JSON round-trips, and the
printed table shows tolerances and the tolerance each output would have needed."""

import dataclasses

import pytest

from yolox_export import LossConfig, StaticYoloXLoss
from yolox_export.parity import TOLERANCES, ParityReport, compare
from yolox_export.scenarios import make_scenario

STRIDES = (8, 16, 32)


class PlantedStatic(StaticYoloXLoss):
    """A regular-mode StaticYoloXLoss whose config's rules are planted wrong: each target keeps its own candidates and
    a contested cell goes to the cheapest of the targets that selected it (``union_candidates=False``), where
    regular SimOTA ranks the image's union and lets every target of the image contend."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self.config, "rules", dataclasses.replace(self.config.rules, union_candidates=False))


def crowded_batches():
    # 100-200 small boxes in 64x64: many cells selected by two targets while a third, non-selecting one is cheaper
    return [make_scenario("crowded", batch_size=1, image_size=(64, 64), num_classes=4, seed=s) for s in (0, 1)]


@pytest.fixture(scope="module")
def planted_report():
    config = LossConfig(STRIDES, 4, mode="regular")
    planted = PlantedStatic(STRIDES, 4, mode="regular")
    return compare(crowded_batches(), config, static_module=planted)


def test_a_planted_conflict_rule_is_a_real_mismatch(planted_report):
    report = planted_report
    assert not report, str(report)
    assert report.row("static", "matched_gt").real > 0, str(report)
    assert any(not d.explained for d in report.differences)
    assert "FAIL" in str(report)


def test_pure_ties_are_explained():
    # a freshly initialised head: every cost ties, and the fast reference's topk picks among them as it likes
    batches = [make_scenario("fresh", batch_size=2, image_size=(160, 160), num_classes=4, seed=s) for s in (0, 1)]
    report = compare(batches, LossConfig(STRIDES, 4, mode="fast"))
    assert report, str(report)
    row = report.row("static", "matched_gt")
    assert row.real == 0 and row.explained > 0, str(report)
    assert report.differences and all(d.explained for d in report.differences)
    assert report.tie_batches.get("static", 0) >= 1
    assert str(report).endswith("PASS")


@pytest.mark.parametrize("which", ("planted", "clean"))
def test_json_round_trip(which, planted_report):
    if which == "planted":
        report = planted_report
    else:
        report = compare([make_scenario("fitted", batch_size=2, image_size=(128, 128), num_classes=4, seed=0)],
                         LossConfig(STRIDES, 4, mode="fast"))
    again = ParityReport.from_json(report.to_json())
    assert again.mode == report.mode and again.batches == report.batches
    assert again.rows == report.rows
    assert again.differences == report.differences
    assert again.tie_batches == report.tie_batches
    assert bool(again) == bool(report)
    assert str(again) == str(report)
    assert ParityReport.from_json(report.to_json(indent=2)).rows == report.rows


def test_table_shows_tolerance_and_needed():
    report = compare([make_scenario("fitted", batch_size=2, image_size=(128, 128), num_classes=4, seed=1)],
                     LossConfig(STRIDES, 4, mode="regular"))
    text = str(report)
    header = text.splitlines()[1].split()
    assert "tol" in header and "needed" in header and "verdict" in header
    for output, tol in (("matched_iou", TOLERANCES["matched_iou"]), ("loss", TOLERANCES["components"]),
                        ("gradients", TOLERANCES["gradients"])):
        row = report.row("static", output)
        line = next(line for line in text.splitlines() if line.split()[:2] == ["static", output])
        assert f"{tol:.0e}" in line
        assert f"{row.needed:.3g}" in line
        assert line.rstrip().endswith("ok")


def test_each_assignment_row_counts_its_own_differences(planted_report):
    # issue 12 item 6: fg_mask's explained/real counted matched_gt's cells, so exact + explained + real exceeded the
    # cell count. A cell's fg_mask differs exactly when one side says background (-1); matched_gt differs at every
    # listed difference.
    report = planted_report
    diffs = [d for d in report.differences if d.subject == "static"]
    fg_diffs = [d for d in diffs if (d.reference_gt == -1) != (d.subject_gt == -1)]
    for name, expected in (("fg_mask", fg_diffs), ("matched_gt", diffs)):
        row = report.row("static", name)
        assert row.exact + row.explained + row.real == row.count, (name, str(report))
        assert row.explained == sum(d.explained for d in expected), name
        assert row.real == sum(not d.explained for d in expected), name
    assert len(fg_diffs) < len(diffs)  # the planted rule moves cells between targets: matched_gt differs more


def test_compiled_subject_goes_through_one_runner_per_grid():
    """Subject "compiled": the padded graph under torch.compile, opened with open_runner, compared like an exported
    graph; batches of one grid with different B and G share one runner (B and G dynamic)."""
    from yolox_export.export.runners import CompiledRunner
    from yolox_export.parity import SubjectRunners

    config = LossConfig(STRIDES, 4, mode="fast")
    batches = [make_scenario("coco", batch_size=b, image_size=(64, 64), num_classes=4, seed=b) for b in (2, 3)]
    runners = SubjectRunners(config, compile_backend="aot_eager")  # inductor's arithmetic: tests/static/test_compile.py
    report = compare(batches, config, ("static", "compiled"), runners=runners)
    assert report, str(report)
    assert report.row("compiled", "matched_gt").count == 5 * 84 and report.row("compiled", "loss").count == 2
    assert [type(r) for r in runners.runners.values()] == [CompiledRunner]
    with pytest.raises(ValueError, match="subject 'onnxruntime' needs onnx_path"):
        compare(batches, config, ("onnxruntime",))


def test_progress_is_reported_through_the_callback_after_each_batch():
    calls = []
    batches = [make_scenario("coco", batch_size=1, image_size=(64, 64), num_classes=4, seed=s) for s in (0, 1)]
    compare(batches, LossConfig(STRIDES, 4, mode="fast"), gradients=False,
            progress=lambda *args: calls.append(args))
    assert calls == [("fast", 1, 2), ("fast", 2, 2)]


def test_a_gradient_graph_has_its_predictions_grad_compared_as_a_gradients_row(grad_export):
    from support import GRAD_CLASSES, GRAD_IMAGE, box_format_of, grad_config

    mode, path = grad_export
    batches = [make_scenario(kind, batch_size=2, image_size=GRAD_IMAGE, num_classes=GRAD_CLASSES, seed=3,
                             box_format=box_format_of(mode)) for kind in ("coco", "fitted", "sparse")]
    report = compare(batches, grad_config(mode), subjects=("onnxruntime",), onnx_path=path)
    row = report.row("onnxruntime", "gradients")
    compared = sum(p.numel() for p in batches[0].predictions) * (len(batches) - report.tie_batches.get("onnxruntime", 0))
    assert row.count == compared > 0 and row.tolerance == TOLERANCES["gradients"]
    assert report and row.passed
