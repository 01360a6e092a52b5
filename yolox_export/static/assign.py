"""Static-shape SimOTA: ``assign``, the one entry from the padded loss to the assignment, and the dense form, the
label assignment of every mode (regular, fast and mmdet always, megvii where its windows would be larger than the
grid) as masked tensor operations over every cell for every padded target, the targets a chunk at a time under a
memory budget (``chunks``; the union of candidates taken over every chunk first).

Shape legend: B batch, A cells (all levels, stride order, row-major), G padded targets, C classes, K top-k.
Every intermediate's shape depends only on input shapes; there is no host synchronisation, no data-dependent
control flow, no boolean-mask indexing and no [B, G, A, C] tensor. Boxes are in pixels, in the mode's box format
(``config.box_format``: (cx, cy, w, h), or (x1, y1, x2, y2) in mmdet mode). The mode's arithmetic comes from its
rules (``config.ModeRules``); the geometry and cost are ``cost``'s, the selection, the tie rule and the tail
``select``'s. The class cost's [B, A, C] steps run in place.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assignment import Assignment
from ..config import IOU_COST_WEIGHT, LossConfig
from ..grid import Grid
from .chunks import Chunking, target_spans, targets_of
from .cost import candidate_masks, class_cost, class_cost_parts, pairwise_iou
from .masks import any_true
from .select import Contest, dynamic_ks, select_cheapest
from .window import uses_windows, window_assign, window_width


def assign(raw: Tensor, marks: Tensor, boxes: Tensor | None, gt: Tensor, gt_mask: Tensor, grid: Grid,
           config: LossConfig, chunking: Chunking, audit: bool = False) -> Assignment:
    """SimOTA of ``config.mode``, float32, without gradient, by the mode's form: windowed (``window.uses_windows``)
    or dense, its targets in chunks (``chunking``).

    raw float32 [B, A, 5 + C] head outputs; marks [B, A] its ``nonfinite_marks`` (0, or NaN for a cell with a
    non-finite output); boxes float32 [B, A, 4] decoded boxes, or None to decode ``raw``'s box logits; gt [B, G, 5]
    and gt_mask bool [B, G] the sanitised slots (``sanitise``). A cell with a non-finite output or decoded box is
    never assigned. ``audit`` adds the per-target counts (``Assignment.counts``; ``select.Contest``).
    """
    with torch.no_grad():
        raw = raw.detach()
        boxes = config.box_format.decode(raw[..., :4], grid) if boxes is None else boxes.detach()  # [B, A, 4]
        usable = (marks == 0) & torch.isfinite(boxes).all(-1)  # [B, A]
        batch, cells = usable.shape
        num_targets = gt.shape[1]
        if config.rules.windowed and uses_windows(num_targets, len(config.strides), cells):
            width = num_targets * window_width(len(config.strides)) if isinstance(num_targets, int) else cells
            return window_assign(raw, boxes, usable, gt, gt_mask, grid, config, chunking.per_chunk(batch, width),
                                 audit)
        return dense_assign(raw, boxes, usable, gt, gt_mask, grid, config, chunking.per_chunk(batch, cells), audit)


def dense_assign(raw: Tensor, boxes: Tensor, usable: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid,
                 config: LossConfig, per_chunk: int | None = None, audit: bool = False) -> Assignment:
    """SimOTA of ``config.mode`` for padded targets over every cell, float32, no gradient.

    raw [B, A, 5 + C] head outputs (objectness and class logits used); boxes [B, A, 4] decoded predictions; usable
    bool [B, A], False for a cell that must never be assigned (a non-finite output or box); gt [B, G, 5] rows
    (class, then the box in the mode's format) and gt_mask bool [B, G], sanitised (``sanitise``). ``per_chunk``
    targets at a time (``chunks``; None: all at once); the result does not depend on it. ``audit`` adds the
    per-target counts (``Assignment.counts``; ``select.Contest``).
    """
    spans = target_spans(gt.shape[1], per_chunk)
    union = None
    if config.union_candidates and len(spans) > 1:  # the image's union of candidates, before any target is scored
        union = torch.zeros(usable.shape, dtype=torch.bool, device=usable.device)  # [B, A]
        for span in spans:
            union |= any_true(near_cells(targets_of(gt, span), targets_of(gt_mask, span), usable, grid, config)[0], 1)
    parts = class_cost_parts(raw[..., 5:], raw[..., 4])
    contest = Contest(usable.shape[0], usable.shape[1], config, usable.device, audit)
    for span in spans:
        contest.add(span[0], *chunk_selection(targets_of(gt, span), targets_of(gt_mask, span), boxes, usable, parts,
                                              union, grid, config))
    return contest.assignment()


def near_cells(gt: Tensor, gt_mask: Tensor, usable: Tensor, grid: Grid, config: LossConfig) -> tuple[Tensor, Tensor]:
    """(near, strong), bool [B, Gc, A]: a real target's candidate cells by its own test (box or centre, or centre
    only), usable cells only; and the strong test (box and centre, or centre only) that is not penalised."""
    in_box, in_centre = candidate_masks(gt[..., 1:5], grid, config)
    near = in_box | in_centre
    near &= gt_mask.unsqueeze(-1) & usable.unsqueeze(1)  # [B, Gc, A]
    in_box &= in_centre  # the strong test, in place (the same tensor as in_centre without a box test)
    return near, in_box


def chunk_selection(gt: Tensor, gt_mask: Tensor, boxes: Tensor, usable: Tensor, parts: tuple[Tensor, Tensor],
                    union: Tensor | None, grid: Grid, config: LossConfig
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(masked cost, selected, IoUs), [B, Gc, A], of a chunk of targets gt [B, Gc, 5] / gt_mask [B, Gc]: each
    target's k cheapest candidates; then their k and whether anything is ranked for them, [B, Gc] (the audit's,
    ``select.requested_ks``). ``union`` [B, A] is the image's union of candidates (regular, megvii) when the
    chunk does not hold every target; None: from this chunk's own targets (or per target, fast)."""
    near, strong = near_cells(gt, gt_mask, usable, grid, config)
    if config.union_candidates:
        union = any_true(near, 1) if union is None else union  # [B, A]
        candidates = union.unsqueeze(1) & gt_mask.unsqueeze(-1)  # [B, Gc, A]
        ranked = any_true(union, -1, keepdim=True) & gt_mask  # [B, Gc]
    else:
        candidates = near
        ranked = None  # from the selection's top-k (fast: its own candidates)
    del near
    ious = pairwise_iou(gt[..., 1:5], boxes, config)  # [B, Gc, A]
    cost = class_cost(parts, gt[..., 0].long())
    cost += torch.log(ious + config.iou_cost_eps).neg_().mul_(IOU_COST_WEIGHT)
    cost += (~strong).to(cost.dtype).mul_(config.outside_cost)
    del strong
    masked_cost = cost.masked_fill_(~candidates, float("inf"))
    ks = dynamic_ks(ious, candidates, config)  # [B, Gc]
    if ranked is None:
        selected, ranked = select_cheapest(masked_cost, candidates, ks, config.max_dynamic_k, with_ranked=True)
    else:
        selected = select_cheapest(masked_cost, candidates, ks, config.max_dynamic_k)
    return masked_cost, selected, ious, ks, ranked
