"""The per-target audit (``StaticYoloXLoss.audit``, ``ReferenceLoss.audit``, ``parity.audit``): a hand-worked case,
invariants, statuses, independence of the chunking (bit for bit: one arithmetic), the table, and agreement with each
reference's own audit on scenario batches, differences explained by ties as parity explains them."""

import math

import pytest
import torch

from yolox_export.audit import STATUSES, TargetAudit
from yolox_export.config import MODES, LossConfig
from yolox_export.parity.audit import AUDIT_FIELDS, explained_rows, fields_of
from yolox_export.parity.comparison import compare
from yolox_export.reference import reference_for
from yolox_export.scenarios import boxes_in_format, make_scenario
from yolox_export.grid import level_shapes
from yolox_export.static import StaticYoloXLoss

STRIDES = (8, 16, 32)
CLASSES = 3
IMAGE = (64, 64)


def scenario(kind, mode, seed=0, batch_size=2):
    form = LossConfig(STRIDES, CLASSES, mode=mode).box_format.name
    return make_scenario(kind, batch_size=batch_size, image_size=IMAGE, num_classes=CLASSES, seed=seed,
                         box_format=form)


def static(mode, **options):
    return StaticYoloXLoss.from_config(LossConfig(STRIDES, CLASSES, mode=mode), **options)


def target_rows(rows, mode):
    """[N, 6] rows (image, class, cx, cy, w, h) in the mode's box format."""
    rows = torch.tensor(rows, dtype=torch.float32)
    form = LossConfig(STRIDES, CLASSES, mode=mode).box_format.name
    return torch.cat((rows[:, :2], boxes_in_format(rows[:, 2:], form)), 1)


@pytest.mark.parametrize("mode", MODES)
def test_hand_worked_duplicate_starves(mode):
    # one level, stride 32, 64x64: a 2x2 grid; zero logits decode to 32x32 boxes centred on the cell corners
    # (col * 32, row * 32) and p = sqrt(sigmoid(0) * sigmoid(0)) = 0.5 for every class. The target (32, 32, 64, 64)
    # covers the image: IoUs 256/4864, 512/4608, 512/4608, 1024/4096 = 0.053, 0.111, 0.111, 0.25, sum 0.525 ->
    # k = max(int(0.525 [* 1.1]), 1) = 1; every cell is its own candidate (inside the box; megvii: within 48 px of
    # its centre). Cheapest cost at the last cell: class 2 * ln 2 (two classes, p = 0.5) + 3 * -ln 0.25 = 8 ln 2.
    # A second, identical target selects the same cell at the same cost: the lower slot wins, the second starves.
    module = StaticYoloXLoss((32,), 2, mode=mode)
    levels = [torch.zeros((1, 1, 2, 2, 7))]
    targets = target_rows([[0, 1, 32, 32, 64, 64], [0, 1, 32, 32, 64, 64]], mode)
    audit = module.audit(levels, targets)
    assert audit.k.tolist() == [1, 1] and audit.selected.tolist() == [1, 1]
    assert audit.cells.tolist() == [1, 0] and audit.lost.tolist() == [0, 1] and audit.won.tolist() == [0, 0]
    assert audit.starved.tolist() == [False, True] and audit.status_names == ["ok", "ok"]
    assert audit.candidates.tolist() == [4, 4]
    torch.testing.assert_close(audit.cheapest, torch.full((2,), 8 * math.log(2.0)), rtol=1e-5, atol=0)
    reference = reference_for(module.config).audit(levels, targets)
    for name in AUDIT_FIELDS + ("candidates", "status"):
        assert torch.equal(getattr(reference, name), getattr(audit, name)), name


@pytest.mark.parametrize("mode", MODES)
def test_invariants_against_the_assignment(mode):
    s = scenario("crowded", mode, seed=1)
    module = static(mode)
    audit, assignment = module.audit(s.predictions, s.targets), module.assign(s.predictions, s.targets)
    for i in range(len(audit)):  # cells: the cells whose matched_gt names the row's slot
        b, slot = int(audit.image[i]), int(audit.slot[i])
        assert int(audit.cells[i]) == int((assignment.matched_gt[b] == slot).sum())
    assert torch.equal(audit.selected - audit.lost + audit.won, audit.cells)
    assert torch.equal(audit.starved, (audit.cells == 0) & (audit.status == 0))
    assert bool((audit.k <= LossConfig(STRIDES, CLASSES, mode=mode).max_dynamic_k).all())
    assert bool((audit.lost >= 0).all() & (audit.won >= 0).all())
    if mode == "fast":  # only the selecting targets contend
        assert not bool(audit.won.any())
    else:  # the crowded batch has targets that win contested cells they never selected
        assert bool(audit.won.any())
    reference = reference_for(module.config)
    ref_audit, ref_assignment = reference.audit(s.predictions, s.targets), reference.assign(s.predictions, s.targets)
    for i in range(len(ref_audit)):
        b, slot = int(ref_audit.image[i]), int(ref_audit.slot[i])
        assert int(ref_audit.cells[i]) == int((ref_assignment.matched_gt[b] == slot).sum())


@pytest.mark.parametrize("mode", MODES)
def test_independent_of_the_memory_budget_bit_for_bit(mode):
    s = scenario("crowded", mode)
    whole = static(mode, max_memory_mib=None).audit(s.predictions, s.targets)
    for budget in (0.05, 0.3):  # a few targets per chunk at B=2, A=84
        chunked = static(mode, max_memory_mib=budget).audit(s.predictions, s.targets)
        for name in AUDIT_FIELDS + ("candidates", "cheapest", "status"):
            assert torch.equal(getattr(chunked, name), getattr(whole, name)), (budget, name)


@pytest.mark.parametrize("mode", MODES)
def test_statuses(mode):
    # image 0: a target far outside the image, alone: no candidate cell at all -> k = 0, "no candidates"
    # image 1: three targets with max_gt = 2: the third has no slot, the second's slot is given up -> over capacity
    # a negative size is malformed; an image index outside [0, B) too (image -1)
    rows = [[0, 0, -500, -500, 10, 10], [1, 0, 20, 20, 16, 16], [1, 1, 40, 40, 16, 16], [1, 2, 30, 30, 8, 8],
            [2, 0, 30, 30, -4, 8], [7, 0, 30, 30, 8, 8]]
    targets = target_rows(rows, mode)
    if mode == "mmdet":  # the malformed row: x2 < x1 in corners
        targets[4, 2:6] = torch.tensor([34.0, 26.0, 30.0, 34.0])
    levels = [torch.zeros((3, 1, 64 // s, 64 // s, 5 + CLASSES)) for s in STRIDES]
    audit = static(mode, max_gt=2, validate=False).audit(levels, targets)
    assert audit.status_names == ["no candidates", "ok", "over capacity", "over capacity", "malformed", "malformed"]
    assert audit.k.tolist()[0] == 0 and audit.k.tolist()[1] >= 1 and audit.k.tolist()[2:] == [0, 0, 0, 0]
    assert audit.slot.tolist()[:4] == [0, 0, -1, -1] and audit.image.tolist()[-1] == -1
    assert not bool(audit.starved[[0, 2, 3, 4, 5]].any())  # a row that is not "ok" is never starved
    with pytest.raises(ValueError):
        static(mode, max_gt=2).audit(levels, targets)  # validating: the malformed rows raise, as in the loss


def test_padded_slots_are_masked_rows():
    from yolox_export.audit import rows_of_slots
    from yolox_export.grid import flatten_levels, level_shapes, make_grid
    from yolox_export.static.audit import slot_audit
    from yolox_export.targets import pad_targets

    s = scenario("coco", "regular")
    config = LossConfig(STRIDES, CLASSES)
    gt, mask = pad_targets(s.targets, 2, max_gt=12)
    slots = slot_audit(flatten_levels(s.predictions), gt, mask, make_grid(level_shapes(s.predictions), STRIDES),
                       config)
    audit = rows_of_slots(slots, gt, config)
    assert len(audit) == 24 and int((audit.status == STATUSES.index("masked")).sum()) == 24 - int(mask.sum())
    masked = audit.status == STATUSES.index("masked")
    assert not bool(audit.k[masked].any() | audit.cells[masked].any() | audit.starved[masked].any())
    ragged = static("regular").audit(s.predictions, s.targets)
    assert torch.equal(audit.cells[~masked], ragged.cells) and torch.equal(audit.k[~masked], ragged.k)


def test_table_lists_the_starved_first():
    s = scenario("crowded", "regular")
    audit = static("regular").audit(s.predictions, s.targets)
    lines = audit.table(limit=5).splitlines()
    assert lines[0].split()[:5] == ["row", "image", "class", "status", "k"]
    assert len(lines) == 7 and all(line.endswith("STARVED") for line in lines[1:6])
    assert f"{int(audit.starved.sum())} starved" in lines[-1] and "(showing 5)" in lines[-1]
    order = audit.starvation_order()
    assert bool(audit.starved[order[: int(audit.starved.sum())]].all())
    assert len(audit.table(order="row").splitlines()) == len(audit) + 2
    with pytest.raises(ValueError, match="order"):
        audit.table(order="size")
    assert isinstance(audit.subset(audit.starved), TargetAudit) and len(audit.subset(audit.starved)) == int(
        audit.starved.sum())


@pytest.mark.parametrize("mode", MODES)
def test_static_audit_equals_the_references_ties_explained(mode):
    config = LossConfig(STRIDES, CLASSES, mode=mode)
    batches = [scenario("crowded", mode, 1)] + [scenario(kind, mode) for kind in ("crowded", "coco", "duplicates",
                                                                                   "border", "fresh")]
    report = compare(batches, config, gradients=False)
    row = report.row("static", "audit")
    assert row.count == sum(int(b.targets.shape[0]) for b in batches)
    assert row.real == 0 and row.exact + row.explained == row.count and row.exact > 0.9 * row.count


def test_a_real_audit_difference_is_not_explained():
    s = scenario("coco", "regular")
    config = LossConfig(STRIDES, CLASSES)
    reference = reference_for(config)
    ref_audit, assignment = reference.audit(s.predictions, s.targets), reference.assign(s.predictions, s.targets)
    got = fields_of(ref_audit)
    got["cells"] = got["cells"].clone()
    got["cells"][0] += 1  # a count no tie can explain, on an otherwise identical assignment
    differs = torch.zeros(len(ref_audit), dtype=torch.bool)
    differs[0] = True
    explained = explained_rows(differs, s.predictions, s.targets, config, ref_audit, got, assignment, assignment)
    assert not bool(explained[0])


def test_a_graph_module_without_audit_outputs_has_the_other_outputs_unchanged():
    """``PaddedYoloXLoss(with_audit=False)`` (the benchmark's graph that measures what the audit outputs cost) drops
    target_k and target_cells and nothing else: the other outputs are the same, bit for bit (one arithmetic)."""
    from yolox_export import PaddedYoloXLoss
    from yolox_export.export.contract import graph_feeds, output_names

    s = scenario("crowded", "regular")
    feeds = graph_feeds(s.predictions, s.targets)
    shapes = level_shapes(s.predictions)
    config = LossConfig(STRIDES, CLASSES)
    full = PaddedYoloXLoss(config, shapes)(*feeds.values())
    lean = PaddedYoloXLoss(config, shapes, with_audit=False)(*feeds.values())
    assert len(full) == len(output_names()) and len(lean) == len(output_names(with_audit=False)) == len(full) - 2
    names = output_names(with_audit=False)
    assert output_names()[:len(names)] == names
    for name, got, want in zip(names, lean, full):
        assert torch.equal(got, want), name
