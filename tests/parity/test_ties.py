"""The tie analysis: selection intervals, contested ties, and that allowing a runtime's ulps does not explain away a
real semantic difference."""

import pytest
import torch

from yolox_export import LossConfig, StaticYoloXLoss
from yolox_export import parity
from yolox_export.parity import compare
from yolox_export.scenarios import make_scenario
from yolox_export.parity.ties import class_cost_with_slack, contested_ties, selection_status


def test_equal_costs_at_the_boundary_are_ambiguous_and_clear_ones_are_not():
    # one target, 5 candidates, k = 2: costs 1, 2, 2, 5, 9 -> cell 0 surely in, cells 1 and 2 tie for the 2nd place,
    # cells 3 and 4 surely out
    cost = torch.tensor([[1.0, 2.0, 2.0, 5.0, 9.0]], dtype=torch.float64)
    tol = torch.full_like(cost, 1e-6)
    cand = torch.ones_like(cost, dtype=torch.bool)
    ambiguous, possible = selection_status(cost, tol, cand, torch.tensor([[2, 2]]))
    assert ambiguous[0].tolist() == [False, True, True, False, False]
    assert possible[0].tolist() == [True, True, True, False, False]


def test_an_integer_boundary_k_makes_the_next_cell_ambiguous():
    # k may be 1 or 2 (sum of IoUs within rounding of 2): cell 1 may or may not be taken
    cost = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    ambiguous, _ = selection_status(cost, torch.full_like(cost, 1e-6), torch.ones_like(cost, dtype=torch.bool),
                                    torch.tensor([[1, 2]]))
    assert ambiguous[0].tolist() == [False, True, False]


def test_wide_interval_of_another_cell_makes_a_cell_ambiguous():
    # cell 2's cost (110) may really be as low as 27 (a saturated probability): it can push cell 1 out of k = 2
    cost = torch.tensor([[10.0, 39.7, 110.0]], dtype=torch.float64)
    tol = torch.tensor([[1e-6, 1e-6, 83.0]], dtype=torch.float64)
    ambiguous, _ = selection_status(cost, tol, torch.ones_like(cost, dtype=torch.bool), torch.tensor([[2, 2]]))
    assert ambiguous[0].tolist() == [False, True, True]


def test_contested_tie_needs_two_reachable_contenders():
    # [n=3 targets, A=2 cells]: cell 0's best two costs are equal, cell 1's are 1 apart
    cost = torch.tensor([[5.0, 1.0], [5.0, 2.0], [9.0, 9.0]], dtype=torch.float64)
    tol = torch.full_like(cost, 1e-6)
    everything = torch.ones_like(cost, dtype=torch.bool)
    assert contested_ties(cost, tol, everything, everything, union=True).tolist() == [True, False]


def test_a_probability_one_ulp_from_one_has_a_large_class_cost_slack():
    # sqrt(sigmoid * sigmoid) rounded to 1.0: torch clamps log1p(-1) at -100, one ulp lower gives log(6e-8) = -16.6
    probabilities = torch.tensor([[1.0, 0.5]])
    cost, slack = class_cost_with_slack(probabilities, torch.tensor([1]), input_ulps=1)
    assert cost[0, 0].item() == pytest.approx(100.0 + 0.6931, abs=1e-3)  # -(-100) + (-log 0.5)
    assert slack[0, 0].item() > 80
    _, none = class_cost_with_slack(probabilities, torch.tensor([1]), input_ulps=0)
    assert none.abs().max().item() == 0


def test_runtime_ulps_do_not_explain_a_planted_radius_bug(monkeypatch):
    monkeypatch.setitem(parity.RUNTIME_ULPS, "static", 2)
    planted = StaticYoloXLoss((8, 16, 32), 20, mode="fast", dynamic_ks_bias=1.1)
    planted.config = LossConfig((8, 16, 32), 20, mode="regular")  # regular's union candidates against fast's reference
    batches = [make_scenario("fitted", batch_size=2, image_size=(320, 320), num_classes=20, seed=s) for s in (0, 1)]
    report = compare(batches, LossConfig((8, 16, 32), 20, mode="fast"), static_module=planted, gradients=False)
    assert report.row("static", "fg_mask").real > 0
