"""static/chunks.py and the chunked assignment: the answer does not depend on the memory budget, bit for bit, in
every mode and form, also where chunk edges fall inside a tie; the budget is validated; sync-free stays sync-free."""

import pytest
import torch

from yolox_export import LossConfig, StaticYoloXLoss, pad_targets
from yolox_export.config import MODES
from yolox_export.grid import decode_boxes, flatten_levels, level_shapes, make_grid
from yolox_export.scenarios import make_scenario
from yolox_export.static.assign import dense_assign
from yolox_export.static.chunks import WHOLE, Chunking, checked_budget, target_spans, targets_per_chunk
from yolox_export.static import padded_assign
from yolox_export.static.sanitise import sanitise_slots
from yolox_export.static.window import uses_windows, window_assign

from support import box_format_of, for_mode

TINY = 1e-6  # MiB: smaller than one target's chunk, so one target per chunk


def test_spans_and_chunk_sizes_hand_worked():
    # 48 bytes per (image, target, cell): B=2, X=100 -> 9600 bytes per target; 1 MiB = 1048576 -> 109 targets
    assert targets_per_chunk(1.0, 2, 100) == 109
    assert targets_per_chunk(TINY, 2, 100) == 1 and targets_per_chunk(None, 2, 100) is None
    assert target_spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert target_spans(5, 5) == [WHOLE] and target_spans(5, None) == [WHOLE]


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "64", True])
def test_a_budget_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(ValueError, match="max_memory_mib"):
        checked_budget(value)
    with pytest.raises(ValueError, match="max_memory_mib"):
        StaticYoloXLoss((8, 16, 32), 3, max_memory_mib=value)


def _gradients(module, scenario):
    leaves = [p.clone().requires_grad_() for p in scenario.predictions]
    loss, components, assignment = module.loss_and_assignment(leaves, scenario.targets)
    return loss, components, assignment, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("max_gt", [None, 200])
@pytest.mark.parametrize("mode", MODES)
def test_any_budget_gives_the_unchunked_answer_bit_for_bit(mode, max_gt):
    """Crowded (120+ targets per image, many contested cells) and duplicates (identical targets, so the contested
    cells tie across targets, and with one target per chunk every chunk edge falls inside such a tie)."""
    for kind, size in (("crowded", (128, 128)), ("duplicates", (160, 128))):
        scenario = make_scenario(kind, batch_size=2, image_size=size, num_classes=5, seed=2,
                                 box_format=box_format_of(mode))
        want = _gradients(StaticYoloXLoss(scenario.strides, 5, mode=mode, max_gt=max_gt, max_memory_mib=None),
                          scenario)
        for budget in (TINY, 0.05):
            got = _gradients(StaticYoloXLoss(scenario.strides, 5, mode=mode, max_gt=max_gt, max_memory_mib=budget),
                             scenario)
            for field in ("fg_mask", "matched_gt", "matched_iou"):
                assert torch.equal(getattr(got[2], field), getattr(want[2], field)), (kind, budget, field)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (kind, budget)
            for g, w in zip(got[3], want[3]):
                assert torch.equal(g, w), (kind, budget)


def test_chunk_edges_inside_a_tie_keep_the_lower_target_index():
    """Three copies of one target: every cell any of them selects is contested by equal costs and goes to the first
    copy (slot 0), with one target per chunk as without chunks."""
    scenario = make_scenario("fitted", batch_size=1, image_size=(64, 64), num_classes=3, seed=0)
    row = scenario.targets[:1]
    targets_cxcywh = torch.cat((row, row, row))
    for mode in MODES:
        targets = for_mode(targets_cxcywh, mode)
        got = StaticYoloXLoss(scenario.strides, 3, mode=mode, max_memory_mib=TINY).assign(scenario.predictions, targets)
        want = StaticYoloXLoss(scenario.strides, 3, mode=mode, max_memory_mib=None).assign(scenario.predictions, targets)
        assert torch.equal(got.matched_gt, want.matched_gt)
        assert got.fg_mask.any() and set(got.matched_gt[got.fg_mask].tolist()) == {0}, mode


@pytest.mark.parametrize("kind", ["coco", "crowded", "border", "duplicates", "fresh"])
def test_megvii_dense_and_windowed_forms_are_the_same_assignment(kind):
    """Past G * W > A megvii mode runs densely (linear in G); the two forms must give one answer."""
    scenario = make_scenario(kind, batch_size=2, image_size=(128, 160), num_classes=4, seed=5)
    config = LossConfig(scenario.strides, 4, mode="megvii")
    raw = flatten_levels(scenario.predictions)
    gt, mask = pad_targets(scenario.targets, 2)
    slots = sanitise_slots(gt, mask, 4)
    grid = make_grid(level_shapes(scenario.predictions), scenario.strides)
    boxes = decode_boxes(raw[..., :4], grid)
    usable = torch.isfinite(raw).all(-1) & torch.isfinite(boxes).all(-1)
    for per_chunk in (None, 1, 3):
        dense = dense_assign(raw, boxes, usable, slots.gt, slots.mask, grid, config, per_chunk)
        windows = window_assign(raw, boxes, usable, slots.gt, slots.mask, grid, config, per_chunk)
        for field in ("fg_mask", "matched_gt", "matched_iou"):
            assert torch.equal(getattr(dense, field), getattr(windows, field)), (per_chunk, field)


def test_the_form_is_chosen_from_static_sizes():
    assert uses_windows(311, 3, 8400) and not uses_windows(312, 3, 8400)  # 311 * 27 = 8397 <= 8400 < 8424


def test_padded_assign_takes_the_budget():
    scenario = make_scenario("crowded", batch_size=1, image_size=(64, 64), num_classes=3, seed=1)
    raw = flatten_levels(scenario.predictions)
    gt, mask = pad_targets(scenario.targets, 1)
    grid = make_grid(level_shapes(scenario.predictions), scenario.strides)
    config = LossConfig(scenario.strides, 3, mode="fast")
    got = padded_assign(raw, gt, mask, grid, config, chunking=Chunking(TINY))
    assert torch.equal(got.matched_gt, padded_assign(raw, gt, mask, grid, config).matched_gt)


@pytest.mark.parametrize("mode", MODES)
def test_chunked_sync_free_call_compiles_to_one_graph(mode):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    scenario = make_scenario("crowded", batch_size=2, image_size=(64, 64), num_classes=3, seed=1,
                             box_format=box_format_of(mode))
    module = StaticYoloXLoss(scenario.strides, 3, mode=mode, max_gt=140, validate=False, max_memory_mib=0.27)
    counter = CompileCounter()
    compiled = torch.compile(module, fullgraph=True, backend=counter)
    for count in (100, 60):
        loss, _ = compiled(scenario.predictions, scenario.targets[:count])
        want, _ = module(scenario.predictions, scenario.targets[:count])
        assert torch.equal(loss, want)
    assert counter.frame_count == 1


def test_a_nan_cost_is_the_same_minimum_whatever_the_chunking():
    """A NaN cost (an IoU that overflows for a huge unvalidated target) counts as the lowest, the first NaN kept, as
    first_argmin over all targets does: one cell, targets 0..2."""
    from yolox_export.static.select import Contest

    config = LossConfig((8,), 3, mode="regular")  # every target contends for a contested cell
    nan = float("nan")
    selected = torch.tensor([[[False], [True], [True]]])  # two selectors: contested
    ious = torch.tensor([[[0.1], [0.2], [0.3]]])
    for costs, want in (([nan, 1.0, 2.0], 0), ([1.0, nan, nan], 1), ([3.0, 1.0, 2.0], 1)):
        results = set()
        for spans in ([(0, 3)], [(0, 1), (1, 3)], [(0, 2), (2, 3)], [(0, 1), (1, 2), (2, 3)]):
            contest = Contest(1, 1, config, "cpu")
            column = torch.tensor(costs).reshape(1, 3, 1)
            for start, stop in spans:
                contest.add(start, column[:, start:stop].clone(), selected[:, start:stop], ious[:, start:stop])
            got = contest.assignment()
            results.add((int(got.matched_gt), float(got.matched_iou)))
        assert results == {(want, float(ious[0, want, 0]))}, (costs, results)


@pytest.mark.parametrize("value", [1e308, 10**400, -(10**400), 2**40 + 1, float(2**41)])
def test_a_budget_beyond_the_limit_is_refused_in_one_line(value):
    with pytest.raises(ValueError, match=r"max_memory_mib must be a number of MiB in \(0, 2\*\*40\]"):
        StaticYoloXLoss((8, 16, 32), 3, max_memory_mib=value)


def test_the_largest_budget_runs():
    from yolox_export.scenarios import make_scenario

    scenario = make_scenario("fitted", batch_size=1, image_size=(64, 64), num_classes=3, seed=0)
    module = StaticYoloXLoss((8, 16, 32), 3, mode="fast", max_memory_mib=2**40)
    loss, _ = module(scenario.predictions, scenario.targets)
    assert torch.isfinite(loss)
