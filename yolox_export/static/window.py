"""Static-shape Megvii SimOTA on windows: the "megvii" mode's assignment without any [B, G, A] tensor.

Shape legend: B batch, A cells (all levels, stride order, row-major), G padded targets, L levels, W window slots per
target (9 per level, at least ``CANDIDATE_TOPK``), M = G * W union slots, C classes, K top-k. Boxes (cx, cy, w, h)
in pixels.

Geometry. Megvii's candidates of a target are the cells whose centre x_c = (i + 0.5) * s passes the strict test
x_c - (cx - 1.5 s) > 0 and (cx + 1.5 s) - x_c > 0 (and the same in y). The sign of a rounded IEEE difference is the
sign of the exact one, so the float test is x_c > fl(cx - r) and fl(cx + r) > x_c; x_c and r = 1.5 s are exact, and
rounding is monotone, so a cell that passes the float test passes the exact test
i + 0.5 in (cx / s - 1.5, cx / s + 1.5), i.e. i in {f - 1, f, f + 1} with f = floor(cx / s) taken exactly. f is
computed as floor(cx / s) and then corrected by the exact comparisons f * s > cx and (f + 1) * s <= cx, so a rounded
division can never shift the block. Each target's window is therefore that 3x3 block on every level; slots outside
the grid are masked (never clamped onto a real cell), and the exact strict test is applied on the window cells.

Union. The image's union U is the set of all targets' window cells that pass their own target's test. Every target
is scored on the whole union, so the union is held as the list of all window slots [B, M], each slot kept only if it
is the first occurrence of its cell: slot (g, w) is kept when its cell passes target g's test and no real target
g' < g's test (a cell that passes g''s test is in g''s window, so this keeps exactly one slot per union cell). Then
costs, IoUs, each target's dynamic k (top-10 IoUs over U), its k cheapest union cells (the cells outside its own
centre region cost 1e6 more) and the contested-cell argmin over all the image's targets are computed on [B, G, M]:
the same sets the reference ranks, so the result is exact by construction, also for windows clipped by the border,
targets with fewer window cells than their k, cells in several windows, duplicate targets, centres outside the image
and class costs above 1e6. Results are scattered back to [B, A] (each kept slot owns a distinct cell; the other
slots write to a discarded slot of their own, so no index is written twice).

Tie rule, the same as the other modes: at a target's top-k boundary equal costs are taken in cell-index order (a
second constant-K top-k over the tied slots' cell indices); a contested cell whose best costs are equal goes to the
lower target index.

Cost: O(B * G * M) = O(B * G^2 * W) element-wise work and memory (W = 27 over three levels), plus the [B, A, C] class
probabilities that every mode computes; the dense modes are O(B * G * A). The window form is smaller while
G * W < A, i.e. G < 311 at 640x640 (A = 8400) and G < 1244 at 1280x1280; beyond that it costs more than a dense
[B, G, A] pass, so a windowed mode runs densely there when G is static (``uses_windows``; an exported graph's G is
symbolic and keeps the windows). The targets are taken in chunks under a memory budget (``chunks``), the union's
two reductions over targets carried across them. The class cost gathers
[B, M, C] logits (smaller than [B, A, C] while M < A), so it needs none of the [B, A, C] log passes of the dense
modes' class cost; the class, IoU and L1 loss terms read the matched cells only, in every mode (``terms``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assignment import Assignment
from ..config import CANDIDATE_TOPK, IOU_COST_WEIGHT, LossConfig
from ..grid import Grid
from .buffer import at_cells
from .chunks import target_spans, targets_of
from .cost import class_cost, class_cost_parts
from .masks import any_true
from .select import Contest, dynamic_ks, select_cheapest

#: Window offsets per level, row-major: (dy, dx) in {-1, 0, 1}^2.
OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def exact_floor_div(value: Tensor, step: float) -> Tensor:
    """floor(value / step) exactly (float tensor): the rounded quotient's floor, corrected by exact products."""
    f = torch.floor(value / step)
    f = f - (f * step > value).to(f.dtype)
    return f + ((f + 1) * step <= value).to(f.dtype)


def window_width(num_levels: int) -> int:
    """W: window slots per target, 9 per level, padded to at least ``CANDIDATE_TOPK``."""
    return max(9 * num_levels, CANDIDATE_TOPK)


def uses_windows(num_targets, num_levels: int, num_cells: int) -> bool:
    """Whether a windowed mode runs on windows (M = G * W union slots) rather than densely over the A cells: while
    G * W <= A the windows are smaller; beyond it the dense form's O(B * G * A) is (linear in G, where the windows'
    O(B * G * G * W) is quadratic). Decided from static sizes; a symbolic G (an exported graph, which keeps one
    formulation for every G) keeps the windows."""
    if not isinstance(num_targets, int):
        return True
    return num_targets * window_width(num_levels) <= num_cells


def window_cells(centres: Tensor, shapes, strides) -> tuple[Tensor, Tensor]:
    """(cell index int64 [B, G, W], in-grid bool [B, G, W]) of each target's window, centres [B, G, 2] (cx, cy).

    Slots outside the grid point at cell 0 and are marked False. W = 9 * L, padded with masked slots to at least
    ``CANDIDATE_TOPK`` so that the union always has room for a constant-K top-k.
    """
    cells, inside = [], []
    offset = 0
    # OFFSETS as device tensors made on the device (no host data: CUDA graph capture refuses the copy)
    steps = torch.arange(-1, 2, device=centres.device)
    dy, dx = steps.repeat_interleave(3), steps.repeat(3)  # [9]: (-1, -1, -1, 0, 0, 0, 1, 1, 1), (-1, 0, 1) x 3
    for (h, w), s in zip(shapes, strides):
        # a block wholly outside stays wholly outside when its base is clamped to [-2, side + 1]
        fx = exact_floor_div(centres[..., 0], float(s)).clamp(-2, w + 1).long().unsqueeze(-1) + dx  # [B, G, 9]
        fy = exact_floor_div(centres[..., 1], float(s)).clamp(-2, h + 1).long().unsqueeze(-1) + dy
        ok = (fx >= 0) & (fx < w) & (fy >= 0) & (fy < h)
        cells.append(torch.where(ok, offset + fy.clamp(0, h - 1) * w + fx.clamp(0, w - 1), 0))
        inside.append(ok)
        offset += h * w
    missing = window_width(len(shapes)) - 9 * len(shapes)
    if missing > 0:
        cells.append(torch.zeros_like(cells[0][..., :missing]))
        inside.append(torch.zeros_like(inside[0][..., :missing]))
    return torch.cat(cells, -1), torch.cat(inside, -1)


def centre_test(gt_boxes: Tensor, x_c: Tensor, y_c: Tensor, stride: Tensor, radius: float) -> Tensor:
    """bool [B, G, M]: Megvii's strict centre test of every target [B, G, 4] at the cells whose centres x_c, y_c and
    stride are [B, M] (``x_c - (cx - r) > 0`` written as ``x_c > cx - r``: the same sign)."""
    reach = (stride * radius).unsqueeze(1)  # [B, 1, M]
    x_c, y_c = x_c.unsqueeze(1), y_c.unsqueeze(1)
    cx, cy = gt_boxes[..., 0:1], gt_boxes[..., 1:2]  # [B, G, 1]
    inside = x_c > cx - reach
    inside &= y_c > cy - reach
    inside &= cx + reach > x_c
    inside &= cy + reach > y_c
    return inside


def union_slots(in_centre_of, spans, gt_mask: Tensor, in_grid: Tensor, usable: Tensor, per_target: int) -> Tensor:
    """bool [B, M]: the slots that stand for the image's union, one per union cell (the first target's slot).

    Slot m belongs to target m // per_target; it stands for its cell when its own target's test passes there and no
    real target before it passes there (a cell that passes g's test is in g's window, so this keeps exactly one slot
    per union cell). ``in_centre_of(span)`` gives every target of a span's test at every slot's cell [B, Gc, M];
    the two reductions over targets are carried across the spans (``chunks``)."""
    owner = torch.arange(gt_mask.shape[1], device=gt_mask.device).unsqueeze(-1).expand(-1, per_target).reshape(-1)
    own = torch.zeros(in_grid.shape, dtype=torch.bool, device=in_grid.device)  # [B, M]
    earlier = torch.zeros_like(own)
    for span in spans:
        real = in_centre_of(span) & targets_of(gt_mask, span).unsqueeze(-1)  # [B, Gc, M]
        targets = torch.arange(span[0], span[0] + real.shape[1], device=gt_mask.device).unsqueeze(-1)  # [Gc, 1]
        own |= any_true(real & (targets == owner), 1)
        earlier |= any_true(real & (targets < owner), 1)
    return own & ~earlier & in_grid & usable


def window_class_cost(raw: Tensor, cells: Tensor) -> tuple[Tensor, Tensor]:
    """``assign.class_cost_parts`` of the slots' rows of raw [B, A, 5 + C] ([B, M, C] and [B, M]: the same
    element-wise operations, so identical values), which avoids the dense form's [B, A, C] work. Whole rows are
    gathered and then sliced: slicing the class logits of raw first would copy [B, A, C] (an exported graph's
    Slice is a copy)."""
    rows = at_cells(raw, cells)  # [B, M, 5 + C]
    return class_cost_parts(rows[..., 5:], rows[..., 4])


def window_iou(gt_boxes: Tensor, pred: Tensor) -> Tensor:
    """IoU [B, G, M] of targets [B, G, 4] with the slots' predicted boxes [B, M, 4]: ``boxes.fast_pairwise_iou``'s
    operations in its order (bit-identical), with the [B, G, M] steps in place to hold fewer such tensors at once."""
    ax, ay, aw, ah = gt_boxes.unsqueeze(-2).unbind(-1)  # [B, G, 1]
    bx, by, bw, bh = pred.unsqueeze(1).unbind(-1)  # [B, 1, M]
    dx = torch.minimum(ax + aw / 2, bx + bw / 2)
    tl = torch.maximum(ax - aw / 2, bx - bw / 2)
    overlap = tl < dx
    dx.sub_(tl)
    dy = torch.minimum(ay + ah / 2, by + bh / 2)
    torch.maximum(ay - ah / 2, by - bh / 2, out=tl)
    overlap &= tl < dy
    dy.sub_(tl)
    del tl
    inter = dx.mul_(dy).mul_(overlap.to(dx.dtype))
    del dy, overlap
    union = (aw * ah + bw * bh).sub_(inter)
    return inter.div_(union)


def scatter_to_cells(values: Tensor, keep: Tensor, cells: Tensor, num_cells: int, fill) -> Tensor:
    """[B, A]: ``values`` [B, M] of the kept slots at their cells, ``fill`` elsewhere. Each kept slot owns a distinct
    cell; every other slot writes to its own discarded column A + m, so no index is written twice."""
    spare = num_cells + torch.arange(cells.shape[-1], device=cells.device)  # [M]
    index = torch.where(keep, cells, spare)
    out = torch.full((values.shape[0], num_cells + cells.shape[-1]), fill, dtype=values.dtype, device=values.device)
    return out.scatter(1, index, values)[:, :num_cells]


def window_assign(raw: Tensor, boxes: Tensor, usable: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid,
                  config: LossConfig, per_chunk: int | None = None, audit: bool = False) -> Assignment:
    """SimOTA of a windowed mode (centre-only candidates: megvii) for padded targets on windows, float32, no gradient.

    raw [B, A, 5 + C] head outputs (objectness, class logits used); boxes [B, A, 4] decoded predictions; usable bool
    [B, A] (False: never assigned); gt [B, G, 5] rows (class, cx, cy, w, h); gt_mask bool [B, G]; ``grid.shapes``
    gives the levels' (H, W). ``per_chunk`` targets at a time (``chunks``; None: all at once); the result does not
    depend on it. ``audit`` adds the per-target counts (``Assignment.counts``), counted over the union slots.
    """
    if grid.shapes is None:
        raise ValueError("megvii mode needs the levels' (H, W): build the grid with grid.make_grid")
    cells_total = raw.shape[1]
    zeros = torch.zeros(2, device=gt.device, dtype=gt.dtype)
    safe = torch.cat((zeros, zeros + 1.0))  # (0, 0, 1, 1), made on the device
    gt_boxes = torch.where(gt_mask.unsqueeze(-1), gt[..., 1:5], safe)  # masked slots: a harmless unit box
    gt_classes = torch.where(gt_mask, gt[..., 0], 0.0).long()  # [B, G]
    cells, in_grid = window_cells(gt_boxes[..., :2], grid.shapes, config.strides)  # [B, G, W]
    per_target = cells.shape[-1]
    cells, in_grid = cells.flatten(1), in_grid.flatten(1)  # [B, M] (B may be 0)
    stride = grid.strides[cells]  # [B, M]
    x_c = (grid.x_shifts[cells] + 0.5) * stride
    y_c = (grid.y_shifts[cells] + 0.5) * stride
    spans = target_spans(gt.shape[1], per_chunk)
    kept = {}  # one span: its test is computed once, for the union and for the costs

    def in_centre_of(span):  # [B, Gc, M]
        if span in kept:
            return kept.pop(span)
        test = centre_test(targets_of(gt_boxes, span), x_c, y_c, stride, config.center_radius)
        if len(spans) == 1:
            kept[span] = test
        return test

    union = union_slots(in_centre_of, spans, gt_mask, in_grid, at_cells(usable, cells), per_target)  # [B, M]
    pred = at_cells(boxes, cells)  # [B, M, 4]
    parts = window_class_cost(raw, cells)
    cell_key = cells.to(pred.dtype)
    contest = Contest(cells.shape[0], cells.shape[1], config, cells.device, audit)
    for span in spans:
        contest.add(span[0], *window_selection(in_centre_of(span), targets_of(gt_boxes, span),
                                               targets_of(gt_classes, span), targets_of(gt_mask, span), union, pred,
                                               parts, cell_key, config))
    chosen = contest.assignment()  # over the slots [B, M]; only union slots can be chosen
    matched_gt = scatter_to_cells(chosen.matched_gt, chosen.fg_mask, cells, cells_total, -1)  # [B, A]
    return Assignment(
        fg_mask=matched_gt >= 0,
        matched_gt=matched_gt,
        matched_iou=scatter_to_cells(chosen.matched_iou, chosen.fg_mask, cells, cells_total, 0.0),
        counts=chosen.counts,
    )


def window_selection(in_centre: Tensor, gt_boxes: Tensor, gt_classes: Tensor, gt_mask: Tensor, union: Tensor,
                     pred: Tensor, parts: tuple[Tensor, Tensor], cell_key: Tensor,
                     config: LossConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(masked cost, selected, IoUs), [B, Gc, M], of a chunk of targets: their tests at every slot ``in_centre``
    [B, Gc, M], boxes [B, Gc, 4], classes and mask [B, Gc]; each target's k cheapest union slots; then their k
    and whether anything is ranked for them (a real target of an image with a union slot), [B, Gc]."""
    candidates = union.unsqueeze(1) & gt_mask.unsqueeze(-1)  # [B, Gc, M]
    ious = window_iou(gt_boxes, pred)  # [B, Gc, M]
    cost = class_cost(parts, gt_classes)
    cost += torch.log(ious + config.iou_cost_eps).neg_().mul_(IOU_COST_WEIGHT)
    cost += (~in_centre).to(cost.dtype).mul_(config.outside_cost)
    masked_cost = cost.masked_fill_(~candidates, float("inf"))
    ks = dynamic_ks(ious, candidates, config)  # [B, Gc]: the top-10 IoUs over the union
    ranked = any_true(union, -1, keepdim=True) & gt_mask  # [B, Gc]
    return masked_cost, select_cheapest(masked_cost, candidates, ks, config.max_dynamic_k, cell_key), ious, ks, ranked
