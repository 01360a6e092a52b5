"""The windowed megvii assignment (static/window.py): window geometry at the float-rounding edge, no [B, G, A]
tensor, the tie rule, exact parity with MegviiYoloXLoss on every scenario kind and on the edge cases the window
argument must survive (clipped windows, fewer window cells than k, shared cells, duplicates, centres outside the
image, class costs above 1e6), padding and batch-order invariance, torch.export and torch.compile."""

import pytest
import torch

from yolox_export import LossConfig, PaddedYoloXLoss, StaticYoloXLoss, pad_targets
from yolox_export.config import MEGVII_CENTER_RADIUS
from yolox_export.grid import flatten_levels, level_shapes, make_grid
from yolox_export.parity import compare
from yolox_export.reference.megvii import geometry_constraint
from yolox_export.scenarios import KINDS, make_scenario
from yolox_export.static.select import select_cheapest
from yolox_export.static.window import centre_test, exact_floor_div, window_cells

from support import LargestTensor

CONFIG = LossConfig((8, 16, 32), 80, mode="megvii")


def assert_parity(report, min_loss_batches=1):
    assert report, str(report)
    for output in ("fg_mask", "matched_gt"):
        assert report.row("static", output).real == 0, str(report)
    assert report.row("static", "loss").count >= min_loss_batches, str(report)
    assert report.row("static", "gradients").count > 0, str(report)


def adversarial_centres(side: int, strides, gen) -> torch.Tensor:
    """Centres exactly on, and one or two ulps either side of, the radius-1.5 boundaries (i + 0.5 +- 1.5) * s of
    every level, and of the block edges i * s, plus a few far outside the image. [N]"""
    values = []
    for s in strides:
        for i in range(-3, side // s + 3):
            values += [(i + 0.5 - 1.5) * s, (i + 0.5 + 1.5) * s, float(i * s)]
    base = torch.tensor(values)
    ulps = [base]
    for direction in (float("inf"), float("-inf")):
        moved = base
        for _ in range(2):
            moved = torch.nextafter(moved, torch.full_like(moved, direction))
            ulps.append(moved)
    far = torch.tensor([-1e6, -40.0, side + 40.0, 1e7])
    return torch.cat(ulps + [far, side * torch.rand(64, generator=gen)])


@pytest.mark.parametrize("strides,side", (((8, 16, 32), 96), ((6, 12), 72), ((4,), 20)))
def test_every_centre_cell_lies_in_the_window(strides, side):
    """The window with the exact strict test finds exactly the cells the dense test finds, for centres on and ulps
    around every boundary (non-power-of-two strides included)."""
    gen = torch.Generator().manual_seed(0)
    xs = adversarial_centres(side, strides, gen)
    ys = xs[torch.randperm(xs.shape[0], generator=gen)]
    boxes = torch.stack((xs, ys, torch.full_like(xs, 5.0), torch.full_like(xs, 5.0)), -1)  # [N, 4]
    shapes = [(side // s, side // s) for s in strides]
    grid = make_grid(shapes, strides)
    dense = geometry_constraint(boxes, grid, MEGVII_CENTER_RADIUS)  # [N, A]
    cells, inside = window_cells(boxes[None, :, :2], shapes, strides)  # [1, N, W]
    stride = grid.strides[cells[0]]
    x_c, y_c = (grid.x_shifts[cells[0]] + 0.5) * stride, (grid.y_shifts[cells[0]] + 0.5) * stride  # [N, W]
    hit = torch.zeros_like(dense)
    for n in range(boxes.shape[0]):
        ok = centre_test(boxes[None, n:n + 1], x_c[None, n], y_c[None, n], stride[None, n], 1.5)[0, 0] & inside[0, n]
        hit[n, cells[0, n][ok]] = True
    assert torch.equal(hit, dense)


@pytest.mark.parametrize("step", (8.0, 6.0, 5.0, 12.0))
def test_exact_floor_div_equals_the_float64_floor(step):
    # values on, and ulps around, multiples of the step, and random ones: floor(value / step) taken exactly
    gen = torch.Generator().manual_seed(1)
    base = torch.cat((torch.arange(-50, 4000).float() * step, 1e4 * torch.randn(4000, generator=gen)))
    values = torch.cat([base] + [torch.nextafter(base, torch.full_like(base, d)) for d in (1e30, -1e30)])
    want = torch.floor(values.double() / step)
    assert torch.equal(exact_floor_div(values, step).double(), want)


def test_select_cheapest_breaks_ties_by_cell_index_not_slot_order():
    # one target, 5 union slots whose cells are 7, 3, 9, 1, 5; costs tie at 1.0 on slots 0, 1, 3 (cells 7, 3, 1)
    cost = torch.tensor([[[1.0, 1.0, 2.0, 1.0, 0.5]]])
    cand = torch.ones_like(cost, dtype=torch.bool)
    cells = torch.tensor([[7.0, 3.0, 9.0, 1.0, 5.0]])
    pad = torch.full((1, 1, 6), float("inf"))  # the constant K = 10 needs at least 10 slots
    cost, cand = torch.cat((cost, pad), -1), torch.cat((cand, pad < 0), -1)
    cells = torch.cat((cells, torch.arange(20.0, 26.0).unsqueeze(0)), -1)
    # k = 3: the 0.5 (slot 4), then the two lowest tied cells 1 (slot 3) and 3 (slot 1), not cell 7 (slot 0)
    got = select_cheapest(cost, cand, torch.tensor([[3]]), 10, cells)[0, 0, :5]
    assert got.tolist() == [False, True, False, True, True]


def test_window_iou_is_bit_identical_to_the_reference_formula():
    from yolox_export.boxes import fast_pairwise_iou
    from yolox_export.static.window import window_iou

    gen = torch.Generator().manual_seed(2)
    gt = torch.cat((100 * torch.rand((2, 7, 2), generator=gen), 1 + 30 * torch.rand((2, 7, 2), generator=gen)), -1)
    pred = torch.cat((100 * torch.rand((2, 40, 2), generator=gen), 1 + 30 * torch.rand((2, 40, 2), generator=gen)), -1)
    pred[:, :7] = gt[0]  # identical boxes (IoU 1) and touching ones below
    pred[:, 7, 0] = gt[:, 0, 0] + gt[:, 0, 2]
    want = fast_pairwise_iou(*gt.unsqueeze(-2).unbind(-1), *pred.unsqueeze(1).unbind(-1))
    assert torch.equal(window_iou(gt, pred), want)


def test_no_b_g_a_tensor_is_materialised():
    # B=2, G=60, A=8400 (640x640), C=4: B*G*A = 1.0M; the window form's largest are [B, G, G*W] = 2*60*1620 = 194k
    s = make_scenario("crowded", batch_size=2, image_size=(640, 640), num_classes=4, seed=1)
    model = StaticYoloXLoss(s.strides, 4, mode="megvii")
    raw = flatten_levels(s.predictions)
    gt, mask = pad_targets(s.targets, 2)
    gt, mask = gt[:, :60], mask[:, :60]
    with LargestTensor() as probe:
        model.forward_padded(raw, gt, mask, level_shapes(s.predictions))
    b, g, a = 2, 60, raw.shape[1]
    assert probe.largest <= b * g * g * 27, (probe.largest, b * g * a)
    assert probe.largest < b * g * a // 4


def test_every_kind_at_640():
    batches = [make_scenario(kind, batch_size=2, seed=seed) for kind in KINDS for seed in (0, 1, 2)]
    assert_parity(compare(batches, CONFIG), min_loss_batches=len(batches) // 2)


@pytest.mark.parametrize("size", ((320, 320), (1280, 1280), (384, 640)))
def test_other_image_sizes(size):
    batches = [make_scenario(kind, batch_size=2, image_size=size, num_classes=20, seed=seed)
               for kind in KINDS for seed in (0,)]
    assert_parity(compare(batches, LossConfig((8, 16, 32), 20, mode="megvii")), min_loss_batches=4)


def edge_batch(seed: int, size: int = 128, strides=(8, 16, 32), num_classes: int = 6, style: str = "fitted"):
    """Targets on and just outside the image border, on adversarial radius boundaries, duplicated, sharing cells;
    predictions fitted to them (many cells with IoU near 1, so k often exceeds a clipped window's cells)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for image in range(2):
        centres = adversarial_centres(size, strides, gen)
        pick = centres[torch.randint(0, centres.shape[0], (24,), generator=gen)].clamp(-30, size + 30)
        xy = torch.stack((pick, pick[torch.randperm(24, generator=gen)]), -1)
        wh = 4 + 60 * torch.rand((24, 2), generator=gen)
        cls = torch.randint(0, num_classes, (24, 1), generator=gen).float()
        block = torch.cat((torch.full((24, 1), float(image)), cls, xy, wh), 1)
        rows += [block, block[:4]]  # four exact duplicates
    targets = torch.cat(rows)
    from yolox_export.scenarios import _fit_to_targets

    predictions = []
    for s in strides:
        p = torch.randn((2, 1, size // s, size // s, 5 + num_classes), generator=gen)
        p[..., :4] *= 0.5
        p[..., 4:] = p[..., 4:] * 2.0 - 3.0
        if style == "fitted":
            _fit_to_targets(p, s, targets, gen)
        predictions.append(p)
    return predictions, targets


@pytest.mark.parametrize("strides", ((8, 16, 32), (8,)))
def test_edge_cases_border_outside_duplicates_and_clipped_windows(strides):
    batches = [edge_batch(seed, strides=strides) for seed in range(4)]
    report = compare(batches, LossConfig(strides, 6, mode="megvii"))
    assert report, str(report)
    assert report.row("static", "matched_gt").real == 0, str(report)


def test_single_level_corner_targets_take_cells_outside_their_window():
    """One level: a corner target has 4 window cells; with 10 fitted cells around it k exceeds 4 and the reference
    takes the rest from other targets' centre cells at >= 1e6. The static result is the same."""
    level = torch.zeros(1, 1, 4, 4, 7)
    for y in range(4):
        for x in range(4):
            level[0, 0, y, x, 0], level[0, 0, y, x, 1] = 4 / 8 - x, 4 / 8 - y  # every cell predicts (4, 4, 8, 8)
    level[..., 4:] = torch.randn(1, 1, 4, 4, 3, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([[0.0, 0.0, 4.0, 4.0, 8.0, 8.0], [0.0, 1.0, 20.0, 20.0, 8.0, 8.0],
                            [0.0, 1.0, 28.0, 4.0, 8.0, 8.0]])
    from yolox_export import MegviiYoloXLoss

    want = MegviiYoloXLoss((8,), 2).assign([level], targets)
    assert int((want.matched_gt[0] == 0).sum()) > 4  # the corner target got cells outside its 2x2 centre region
    got = StaticYoloXLoss((8,), 2, mode="megvii").assign([level], targets)
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_class_costs_above_the_penalty():
    """C = 12000, 64x64 image. Target 0's centre cells have saturated logits (p rounds to 1: each class's log1p(-p)
    clamps at -100, class cost 12000 * 100 = 1.2e6 > 1e6); the rest have ordinary ones (class cost ~ 12000 * 0.05).
    So target 0's own cells cost more than target 1's cells plus the 1e6 penalty: the reference takes target 1's
    cells for target 0, and the window argument "own cells always cheaper" fails. The static result is the same."""
    from yolox_export import MegviiYoloXLoss

    num_classes, strides = 12000, (8, 16, 32)
    gen = torch.Generator().manual_seed(5)
    targets = torch.tensor([[0.0, 3.0, 16.0, 16.0, 20.0, 20.0], [0.0, 7.0, 48.0, 44.0, 12.0, 16.0]])
    grid = make_grid([(64 // s, 64 // s) for s in strides], strides)
    own = geometry_constraint(targets[:1, 2:6], grid, MEGVII_CENTER_RADIUS)[0]  # [A]
    raw = torch.randn((1, grid.num_cells, 5 + num_classes), generator=gen) * 0.5
    raw[..., 4:] -= 3.0
    raw[0, own, 4:] = 30.0
    predictions, start = [], 0
    for s in strides:
        n = (64 // s) ** 2
        predictions.append(raw[:, start:start + n].reshape(1, 1, 64 // s, 64 // s, -1))
        start += n
    want = MegviiYoloXLoss(strides, num_classes).assign(predictions, targets)
    taken = want.fg_mask[0] & (want.matched_gt[0] == 0)
    assert bool((taken & ~own).any())  # target 0 really was given cells outside its centre region
    report = compare([(predictions, targets)], LossConfig(strides, num_classes, mode="megvii"))
    assert report, str(report)
    assert report.row("static", "matched_gt").exact == report.row("static", "matched_gt").count, str(report)


def test_extra_padding_and_batch_permutation_change_nothing():
    s = make_scenario("coco", batch_size=3, image_size=(320, 320), num_classes=20, seed=3)
    model = StaticYoloXLoss(s.strides, 20, mode="megvii")
    raw = flatten_levels(s.predictions)
    gt, mask = pad_targets(s.targets, 3)
    shapes = level_shapes(s.predictions)
    tight = model.forward_padded(raw, gt, mask, shapes)
    junk = torch.tensor([3.0, 100.0, 100.0, 50.0, 50.0]).expand(3, 7, 5)
    loose = model.forward_padded(raw, torch.cat((gt, junk), 1), torch.cat((mask, torch.zeros(3, 7, dtype=torch.bool)), 1),
                                 shapes)
    perm = torch.tensor([2, 0, 1])
    permuted = model.forward_padded(raw[perm], gt[perm], mask[perm], shapes)
    for name in ("fg_mask", "matched_gt", "matched_iou"):
        assert torch.equal(getattr(loose.assignment, name), getattr(tight.assignment, name)), name
        assert torch.equal(getattr(permuted.assignment, name), getattr(tight.assignment, name)[perm]), name
    assert torch.equal(loose.components, tight.components)


def test_torch_export_with_dynamic_batch_and_targets():
    s = make_scenario("coco", batch_size=2, image_size=(128, 128), num_classes=5, seed=0)
    module = PaddedYoloXLoss(LossConfig(s.strides, 5, mode="megvii"), level_shapes(s.predictions))
    raw = flatten_levels(s.predictions)
    gt, mask = pad_targets(s.targets, 2)
    batch, targets = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("max_gt", min=1, max=512)
    exported = torch.export.export(module, (raw, gt, mask),
                                   dynamic_shapes=({0: batch}, {0: batch, 1: targets}, {0: batch, 1: targets}))
    s2 = make_scenario("coco", batch_size=3, image_size=(128, 128), num_classes=5, seed=1)
    raw2 = flatten_levels(s2.predictions)
    gt2, mask2 = pad_targets(s2.targets, 3, 40)
    for g, w in zip(exported.module()(raw2, gt2, mask2), module(raw2, gt2, mask2)):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_torch_compile_fullgraph_runs():
    s = make_scenario("coco", batch_size=2, image_size=(128, 128), num_classes=5, seed=0)
    module = PaddedYoloXLoss(LossConfig(s.strides, 5, mode="megvii"), level_shapes(s.predictions))
    raw = flatten_levels(s.predictions)
    gt, mask = pad_targets(s.targets, 2, 30)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    for g, w in zip(compiled(raw, gt, mask), module(raw, gt, mask)):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_a_grid_without_level_shapes_is_refused():
    from yolox_export.grid import Grid
    from yolox_export.static import padded_assign

    s = make_scenario("coco", batch_size=1, image_size=(320, 320), num_classes=3, seed=0)
    grid = make_grid(level_shapes(s.predictions), s.strides)
    gt, mask = pad_targets(s.targets, 1)
    assert gt.shape[1] * 27 <= grid.strides.shape[0]  # G * W <= A: the windowed form runs
    with pytest.raises(ValueError, match="megvii mode needs the levels"):
        padded_assign(flatten_levels(s.predictions), gt, mask, Grid(grid.x_shifts, grid.y_shifts, grid.strides),
                      LossConfig(s.strides, 3, mode="megvii"))


def test_tie_analysis_knows_the_megvii_cost():
    """Target A (class 0) [4, 12]^2 and B (class 1) [20, 28]^2 on a 4x4 grid at stride 8; every union cell predicts
    A's box and all class logits are 0. B's IoU is 0 everywhere, k_B = 1, and its 4 centre cells 10, 11, 14, 15 all
    cost 2 ln2 + 3 * -log(1e-8): a four-way tie for B's one cell, so those cells are ambiguous for B; B's other
    union cells cost 1e6 more (the megvii penalty), surely not selected. The static module takes cell 10 (lowest
    index); cell 10 is contested (A takes all 8) and B wins it (56.6 < 1e6 + 1.4)."""
    from yolox_export import MegviiYoloXLoss
    from yolox_export.parity.ties import image_ties

    level = torch.zeros(1, 1, 4, 4, 7)
    for cell in (0, 1, 4, 5, 10, 11, 14, 15):
        y, x = divmod(cell, 4)
        level[0, 0, y, x, 0], level[0, 0, y, x, 1] = 1.0 - x, 1.0 - y
    targets = torch.tensor([[0.0, 0.0, 8.0, 8.0, 8.0, 8.0], [0.0, 1.0, 24.0, 24.0, 8.0, 8.0]])
    config = LossConfig((8,), 2, mode="megvii")
    ties = image_ties(flatten_levels([level])[0], targets[:, 1:], make_grid([(4, 4)], (8,)), config)
    assert ties.ambiguous[1].nonzero().flatten().tolist() == [10, 11, 14, 15]
    # A: k = int(8 * 1.0) = 8 = |U|, but 8.0 sits on an integer, so k = 7 is within rounding: A's own cells (cost
    # 1.4) are surely selected, its four equal 1e6 cells are the ambiguous ones
    assert ties.ambiguous[0].nonzero().flatten().tolist() == [10, 11, 14, 15]
    assert ties.k_range[0].tolist() == [7, 8]
    got = StaticYoloXLoss((8,), 2, mode="megvii").assign([level], targets)
    assert got.matched_gt[0].tolist() == [0, 0, -1, -1, 0, 0, -1, -1, -1, -1, 1, 0, -1, -1, 0, 0]
    report = compare([([level], targets)], config)
    assert report.row("static", "matched_gt").real == 0, str(report)
    want = MegviiYoloXLoss((8,), 2).assign([level], targets)
    assert int((want.matched_gt[0] == 1).sum()) == 1


@pytest.mark.parametrize("mode", ("regular", "fast", "megvii"))
def test_decoded_boxes_given_are_the_boxes_decoded_from_the_logits(mode):
    """Every mode takes the caller's decoded boxes (Megvii's head hands them over): given the boxes its own decode
    gives, the assignment and the loss are those of decoding the logits."""
    from yolox_export.grid import decode_boxes
    from yolox_export.static import padded_loss

    s = make_scenario("coco", batch_size=2, image_size=(64, 64), num_classes=3, seed=0)
    raw = flatten_levels(s.predictions)
    gt, mask = pad_targets(s.targets, 2)
    grid = make_grid(level_shapes(s.predictions), s.strides)
    config = LossConfig(s.strides, 3, mode=mode)
    want = padded_loss(raw, gt, mask, grid, config)
    got = padded_loss(raw, gt, mask, grid, config, boxes=decode_boxes(raw[..., :4], grid))
    assert torch.equal(got.assignment.matched_gt, want.assignment.matched_gt)
    assert torch.equal(got.assignment.matched_iou, want.assignment.matched_iou)
    torch.testing.assert_close(got.components, want.components, rtol=0, atol=0)
