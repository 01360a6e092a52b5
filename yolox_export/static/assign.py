"""Static-shape SimOTA, the dense form: the label assignment of every mode (regular and fast always, megvii where its
windows would be larger than the grid) as masked tensor operations over every cell for every padded target, the
targets a chunk at a time under a memory budget (``chunks``; the union of candidates taken over every chunk first).

Shape legend: B batch, A cells (all levels, stride order, row-major), G padded targets, C classes, K top-k.
Every intermediate's shape depends only on input shapes; there is no host synchronisation, no data-dependent
control flow, no boolean-mask indexing and no [B, G, A, C] tensor. Boxes are in pixels, in the mode's box format
(``config.box_format``: (cx, cy, w, h), or (x1, y1, x2, y2) in mmdet mode). The mode's
arithmetic comes from its rules (``config.ModeRules``); the selection, the tie rule and the tail are ``select``'s.

Peak working set, measured by ``yolox-export bench`` (forward, B=16, 640x640, C=80): about 6 (regular) to 10 (fast)
x B·G·A x 4 bytes when the [B, G, A] tensors dominate (G = 196); when G is small the [B, A, C] class probabilities
dominate instead (4.5 to 5 [B, A, C] float tensors at G = 12). The class cost's [B, A, C] steps run in place.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assignment import Assignment
from ..config import IOU_COST_WEIGHT, LossConfig
from ..grid import Grid
from .masks import any_true
from .chunks import target_spans, targets_of
from .select import Contest, dynamic_ks, select_cheapest


def candidate_masks(gt_boxes: Tensor, grid: Grid, config: LossConfig) -> tuple[Tensor, Tensor]:
    """(in_box, in_centre), bool [B, G, A], with the mode's own arithmetic (``ModeRules``).

    ``x - l > 0`` in the references equals ``x > l`` here: the sign of a rounded IEEE difference is the sign of the
    exact one. The target's centre and corners are read in the mode's box format (``config.box_format``). The cell
    centre and the centre test are written as each reference writes them
    (``centre_by_parts``, ``reach_from_cell``), since there the roundings differ. A mode without a box test
    (``box_test`` False: megvii) returns its centre test twice (so ``in_box | in_centre`` and ``in_box & in_centre``
    are that test); this dense form of a windowed mode serves the tie analysis, its assignment uses windows.
    """
    rules = config.rules
    stride = grid.strides
    if rules.centre_by_parts:
        x_c, y_c = grid.x_shifts * stride + 0.5 * stride, grid.y_shifts * stride + 0.5 * stride  # [A]
    else:
        x_c, y_c = (grid.x_shifts + 0.5) * stride, (grid.y_shifts + 0.5) * stride
    form = config.box_format
    cx, cy = (c.unsqueeze(-1) for c in form.centre(gt_boxes))  # [B, G, 1]
    reach = config.center_radius * stride  # [A]
    if rules.reach_from_cell:
        in_centre = x_c + reach > cx  # [B, G, A]
        in_centre &= cx > x_c - reach
        in_centre &= y_c + reach > cy
        in_centre &= cy > y_c - reach
    else:
        in_centre = x_c > cx - reach
        in_centre &= cx + reach > x_c
        in_centre &= y_c > cy - reach
        in_centre &= cy + reach > y_c
    if not rules.box_test:
        return in_centre, in_centre
    x1, y1, x2, y2 = (c.unsqueeze(-1) for c in form.corners(gt_boxes))  # [B, G, 1]
    in_box = x_c > x1  # [B, G, A]
    in_box &= x2 > x_c
    in_box &= y_c > y1
    in_box &= y2 > y_c
    return in_box, in_centre


def pairwise_iou(gt_boxes: Tensor, boxes: Tensor, config: LossConfig) -> Tensor:
    """IoU [B, G, A] of every target [B, G, 4] with every predicted box [B, A, 4], by the mode's formula."""
    a = gt_boxes.unsqueeze(-2).unbind(-1)  # 4 x [B, G, 1]
    b = boxes.unsqueeze(1).unbind(-1)  # 4 x [B, 1, A]
    return config.pairwise_iou(*a, *b)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), written out: onnxruntime's CPU Sigmoid (1.32) is off by up to several hundred percent for
    logits below about -10 (and returns 0 below -18), while its Exp is accurate. Within 3 ulps of torch.sigmoid."""
    return x.neg().exp_().add_(1.0).reciprocal_()


def class_cost_parts(cls_logits: Tensor, obj_logits: Tensor) -> tuple[Tensor, Tensor]:
    """(p [B, A, C], negative-class sum [B, A]) of ``class_cost``: p = sqrt(sigmoid(cls) * sigmoid(obj)), and
    sum_c max(log1p(-p_c), -100). Computed once per call, whatever the number of target chunks."""
    p = sigmoid(cls_logits).mul_(sigmoid(obj_logits).unsqueeze(-1)).sqrt_()  # [B, A, C]
    neg_sum = p.neg().log1p_().clamp_(min=-100.0).sum(-1)  # [B, A]
    return p, neg_sum


def class_cost(parts: tuple[Tensor, Tensor], gt_classes: Tensor) -> Tensor:
    """SimOTA class cost [B, G, A] without a [B, G, A, C] tensor, for ``class_cost_parts`` and classes [B, G].

    The references' BCE(p, one-hot(k)).sum(-1) is ``-sum_c n_c + (n_k - l_k)``, n = max(log1p(-p), -100) and
    l = max(log(p), -100), torch's clamps kept: the sum over classes is one [B, A] reduction, and the target class's
    p is one row gather per target, whose two logs are then taken on [B, G, A].
    """
    p, neg_sum = parts
    batch, cells, classes = p.shape
    rows = torch.arange(batch, device=p.device).unsqueeze(1) * classes + gt_classes  # [B, G]
    p_target = p.transpose(1, 2).reshape(batch * classes, cells).index_select(0, rows.reshape(-1))  # [B * G, A]
    p_target = p_target.reshape(batch, gt_classes.shape[1], cells)  # [B, G, A]
    term = p_target.neg().log1p_().clamp_(min=-100.0).sub_(p_target.log().clamp_(min=-100.0))
    return term.sub_(neg_sum.unsqueeze(1))


def assign(raw: Tensor, boxes: Tensor, usable: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid,
           config: LossConfig, per_chunk: int | None = None, audit: bool = False) -> Assignment:
    """SimOTA of ``config.mode`` for padded targets over every cell, float32, no gradient.

    raw [B, A, 5 + C] head outputs (objectness and class logits used); boxes [B, A, 4] decoded predictions; usable
    bool [B, A], False for a cell that must never be assigned (a non-finite output or box); gt [B, G, 5] rows
    (class, then the box in the mode's format) and gt_mask bool [B, G], sanitised (``padding``). ``per_chunk`` targets at a time
    (``chunks``; None: all at once); the result does not depend on it. ``audit`` adds the per-target counts
    (``Assignment.counts``; ``select.Contest``).
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
