"""A few training steps per mode: the reference and static curves coincide, the static module equals the reference on
the reference run's own predictions at every step, and the JSON follows the schema.

Tolerance: none. The static loss computes its loss with the references' own function over the matched cells
(``matched_loss``), so on the same input its loss components and its gradient are the reference's bit for bit; the
two training runs then perform the same float32 operations on the same values at every step. Their curves and final
weights are equal, not close, and a 1-ulp nudge of the initial weights (the control run) is enough to make them
differ, which these tests would see.
"""

import json
import math

import pytest

from yolox_export.config import COMPONENT_NAMES, MODES
from yolox_export.demo.report import check_schema, relative_gaps, to_dict
from yolox_export.demo.train import DemoSettings, run_demo

SETTINGS = DemoSettings(steps=4, batch_size=4, image_size=64, dataset_size=16, num_classes=3)


@pytest.fixture(scope="module")
def result():
    return run_demo(SETTINGS)


def test_every_mode_runs_every_step(result):
    assert tuple(result.runs) == MODES
    for run in result.runs.values():
        for curve in (run.reference, run.static, run.control):
            assert len(curve.components) == len(curve.step_ms) == len(curve.loss_ms) == SETTINGS.steps
            assert all(len(c) == len(COMPONENT_NAMES) and all(math.isfinite(v) for v in c) for c in curve.components)
        assert len(run.same_input.components) == len(run.differs) == SETTINGS.steps


@pytest.mark.parametrize("mode", MODES)
def test_same_input_parity_at_every_step(result, mode):
    run = result.runs[mode]
    assert run.same_input.cells == [0] * SETTINGS.steps
    assert run.same_input.components == run.reference.components


@pytest.mark.parametrize("mode", MODES)
def test_training_curves_coincide_within_float32_rounding(result, mode):
    run = result.runs[mode]
    assert run.first_difference is None and not any(run.differs)
    assert run.static.components == run.reference.components  # every component, every step, bit for bit
    assert run.weight_gap == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_a_one_ulp_start_departs_from_the_curve(result, mode):
    run = result.runs[mode]
    assert run.control_weight_gap > 0.0
    assert max(relative_gaps(run.reference.total, run.control.total)) > 0.0


def test_json_follows_the_schema(result):
    data = json.loads(json.dumps(to_dict(result), allow_nan=False))
    check_schema(data)
    for mode, entry in data["modes"].items():
        run = result.runs[mode]
        assert entry["reference"] == run.reference.total and entry["static"] == run.static.total
        assert len(entry["reference"]) == SETTINGS.steps
        first = entry["first_assignment_difference"]
        assert first is None or (isinstance(first, int) and entry["assignment_differs"][first])
        assert first is not None or not any(entry["assignment_differs"])
        assert set(entry["step_ms"]) == {"reference", "static"}
        assert all(v > 0 for v in entry["step_ms"].values())


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("modes"), "modes"),
    (lambda d: d["modes"]["regular"].pop("static"), "static"),
    (lambda d: d["modes"]["regular"].update(reference=[1.0, "x"]), "reference"),
    (lambda d: d["modes"]["regular"].update(static=[1.0]), "different lengths"),
    (lambda d: d["modes"]["regular"].pop("first_assignment_difference"), "first_assignment_difference"),
    (lambda d: d["modes"]["regular"].update(first_assignment_difference=7), "first_assignment_difference"),
    (lambda d: d["modes"]["regular"].update(first_assignment_difference=True), "first_assignment_difference"),
    (lambda d: d["modes"]["regular"]["step_ms"].pop("static"), "step_ms"),
    (lambda d: d["modes"]["regular"].update(step_ms=3.0), "step_ms"),
])
def test_schema_violations_are_named(change, match):
    data = {"modes": {"regular": {"reference": [2.0, 1.5], "static": [2.0, 1.5], "first_assignment_difference": None,
                                  "step_ms": {"reference": 3.0, "static": 2.5}}}}
    check_schema(data)
    change(data)
    with pytest.raises(ValueError, match=match):
        check_schema(data)


def test_relative_gaps_hand_cases():
    # |1.5 - 1| / 1 = 0.5; equal values give 0; |0 - 2| / 2 = 1
    assert relative_gaps([1.0, 3.0, 2.0], [1.5, 3.0, 0.0]) == [0.5, 0.0, 1.0]


@pytest.mark.parametrize("kwargs, match", [(dict(steps=0), "steps"), (dict(image_size=100), "divisible by 32"),
                                           (dict(lr=-1.0), "lr")])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DemoSettings(**kwargs)


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="nonsense"):
        run_demo(SETTINGS, modes=("nonsense",))


def test_settings_check_the_data_set_too():
    with pytest.raises(ValueError, match="batch_size"):
        DemoSettings(batch_size=9, dataset_size=8)
    with pytest.raises(ValueError, match="num_classes must be at most 4"):
        DemoSettings(num_classes=5)
