"""Static-shape SimOTA: the label assignment of both references as masked tensor operations on padded targets.

Shape legend: B batch, A cells (all levels, stride order, row-major), G padded targets, C classes, K top-k.
Every intermediate's shape depends only on input shapes; there is no host synchronisation, no data-dependent
control flow, no boolean-mask indexing and no [B, G, A, C] tensor. Boxes are (cx, cy, w, h) in pixels.

Tie rule (deterministic, the same on every backend, built into the selection rather than left to ``topk``):

* among a target's candidates with equal cost at its top-k boundary, the lower cell index is selected first;
* a contested cell whose best costs are equal goes to the lower target index (slot in the padded layout, which is
  the target's order of appearance within its image).

Selection of a target's k cheapest cells is "cost < t, plus the first (k - #below) cells with cost == t in cell
order", t being the k-th smallest cost taken from one ``topk`` with a constant K. ``topk``'s values are unique
whatever its index order, so the result does not depend on how a backend orders ties.

Peak working set, measured by ``yolox-export bench`` (forward, B=16, 640x640, C=80): about 6 (regular) to 10 (fast)
x B·G·A x 4 bytes when the [B, G, A] tensors dominate (G = 196); when G is small the [B, A, C] class probabilities
dominate instead (4.5 to 5 [B, A, C] float tensors at G = 12). The class cost's [B, A, C] steps run in place.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assignment import Assignment
from ..boxes import fast_pairwise_iou, regular_pairwise_iou
from ..config import CANDIDATE_TOPK, IOU_COST_EPS, IOU_COST_WEIGHT, OUTSIDE_COST, LossConfig
from ..grid import Grid, decode_boxes
from .masks import any_true, count_true


def candidate_masks(gt_boxes: Tensor, grid: Grid, config: LossConfig) -> tuple[Tensor, Tensor]:
    """(in_box, in_centre), bool [B, G, A], with each mode's own arithmetic.

    ``x - l > 0`` in the references equals ``x > l`` here: the sign of a rounded IEEE difference is the sign of the
    exact one. The centre tests are written as each reference writes them, since there the roundings differ.
    Megvii mode has no in-box test: both masks are its radius-1.5 centre test (so ``in_box | in_centre`` and
    ``in_box & in_centre`` are that test); this dense form serves the tie analysis, the assignment uses windows.
    """
    stride = grid.strides
    if config.mode == "megvii":
        cx, cy, reach = gt_boxes[..., 0:1], gt_boxes[..., 1:2], config.center_radius * stride
        x_c, y_c = (grid.x_shifts + 0.5) * stride, (grid.y_shifts + 0.5) * stride
        in_centre = (x_c > cx - reach) & (y_c > cy - reach) & (cx + reach > x_c) & (cy + reach > y_c)
        return in_centre, in_centre
    if config.mode == "regular":
        x_c, y_c = grid.x_shifts * stride + 0.5 * stride, grid.y_shifts * stride + 0.5 * stride  # [A]
    else:
        x_c, y_c = (grid.x_shifts + 0.5) * stride, (grid.y_shifts + 0.5) * stride
    cx, cy = gt_boxes[..., 0:1], gt_boxes[..., 1:2]  # [B, G, 1]
    half_w, half_h = 0.5 * gt_boxes[..., 2:3], 0.5 * gt_boxes[..., 3:4]
    in_box = x_c > cx - half_w  # [B, G, A]
    in_box &= cx + half_w > x_c
    in_box &= y_c > cy - half_h
    in_box &= cy + half_h > y_c
    reach = config.center_radius * stride  # [A]
    if config.mode == "regular":
        in_centre = x_c > cx - reach
        in_centre &= cx + reach > x_c
        in_centre &= y_c > cy - reach
        in_centre &= cy + reach > y_c
    else:
        in_centre = x_c + reach > cx
        in_centre &= cx > x_c - reach
        in_centre &= y_c + reach > cy
        in_centre &= cy > y_c - reach
    return in_box, in_centre


def pairwise_iou(gt_boxes: Tensor, boxes: Tensor, mode: str) -> Tensor:
    """IoU [B, G, A] of every target [B, G, 4] with every predicted box [B, A, 4], by the mode's formula."""
    a = gt_boxes.unsqueeze(-2).unbind(-1)  # 4 x [B, G, 1]
    b = boxes.unsqueeze(1).unbind(-1)  # 4 x [B, 1, A]
    formula = regular_pairwise_iou if mode == "regular" else fast_pairwise_iou
    return formula(*a, *b)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), written out: onnxruntime's CPU Sigmoid (1.32) is off by up to several hundred percent for
    logits below about -10 (and returns 0 below -18), while its Exp is accurate. Within 3 ulps of torch.sigmoid."""
    return x.neg().exp_().add_(1.0).reciprocal_()


def class_cost(cls_logits: Tensor, obj_logits: Tensor, gt_classes: Tensor) -> Tensor:
    """SimOTA class cost [B, G, A] without a [B, G, A, C] tensor.

    With p = sqrt(sigmoid(cls) * sigmoid(obj)) [B, A, C], the references' BCE(p, one-hot(k)).sum(-1) is
    ``-sum_c n_c + (n_k - l_k)``, n = max(log1p(-p), -100) and l = max(log(p), -100), torch's clamps kept: the sum
    over classes is one [B, A] reduction, and the target class's p is one row gather per target, whose two logs are
    then taken on [B, G, A]. In-place steps keep the [B, A, C] work to a few passes over one buffer.
    """
    batch, cells, classes = cls_logits.shape
    p = sigmoid(cls_logits).mul_(sigmoid(obj_logits).unsqueeze(-1)).sqrt_()  # [B, A, C]
    rows = torch.arange(batch, device=cls_logits.device).unsqueeze(1) * classes + gt_classes  # [B, G]
    p_target = p.transpose(1, 2).reshape(batch * classes, cells).index_select(0, rows.reshape(-1))  # [B * G, A]
    p_target = p_target.reshape(batch, gt_classes.shape[1], cells)  # [B, G, A]
    neg_sum = p.neg_().log1p_().clamp_(min=-100.0).sum(-1)  # [B, A]; p is spent
    term = p_target.neg().log1p_().clamp_(min=-100.0).sub_(p_target.log().clamp_(min=-100.0))
    return term.sub_(neg_sum.unsqueeze(1))


def dynamic_ks(ious: Tensor, candidates: Tensor, config: LossConfig) -> Tensor:
    """int64 [B, G]: max(int(sum of the top-10 candidate IoUs [* bias in fast mode]), 1)."""
    top = min(CANDIDATE_TOPK, ious.shape[-1])
    total = ious.masked_fill(~candidates, 0.0).topk(top, dim=-1).values.sum(-1)
    if config.mode == "fast":
        total = total * config.dynamic_ks_bias
    return total.long().clamp(min=1)


def select_topk(masked_cost: Tensor, candidates: Tensor, k: Tensor, max_k: int) -> Tensor:
    """bool [B, G, A]: each target's k cheapest candidates, equal costs taken in cell order (all if fewer than k)."""
    top = min(max_k, masked_cost.shape[-1])
    values = masked_cost.topk(top, dim=-1, largest=False, sorted=True).values  # [B, G, K]
    inf = torch.full_like(values[..., :1], float("inf"))
    values = torch.cat((values, inf), dim=-1)  # [B, G, K + 1]: k beyond K selects every candidate
    threshold = values.gather(-1, (k.clamp(max=top + 1) - 1).unsqueeze(-1))  # [B, G, 1]
    below = masked_cost < threshold  # [B, G, A]
    needed = k.unsqueeze(-1) - count_true(below, -1, keepdim=True)  # [B, G, 1], float32
    at_threshold = (masked_cost == threshold) & candidates
    tie_rank = at_threshold.to(masked_cost.dtype).cumsum(-1)  # [B, G, A]
    return below | (at_threshold & (tie_rank <= needed))


#: Added to the position of every value that is not its axis's minimum in ``first_argmin``: 2^24, above any axis
#: length (positions below it are exact float32 integers), and a constant (an axis length would fix G on export).
NOT_MINIMUM = float(2**24)


def first_argmin(values: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """(min, index of its first occurrence) along ``dim``, lower index winning ties by construction.

    The index is the smallest ``position + 2^24 * (value != min)``: arithmetic rather than a masked fill, since
    onnxruntime's CPU Where is several times slower than an Add over the same [B, G, A] tensor
    (microsoft/onnxruntime#5896). When no value equals the min (a NaN min), the index is 2^24 or more, outside the
    axis.
    """
    best = values.amin(dim, keepdim=True)
    positions = torch.arange(values.shape[dim], device=values.device, dtype=values.dtype)
    shape = [1] * values.dim()
    shape[dim] = -1
    away = (values != best).to(values.dtype).mul_(NOT_MINIMUM)  # [B, G, A]: 0 at the minima, 2^24 elsewhere
    first = away.add_(positions.reshape(shape)).amin(dim)
    return best.squeeze(dim), first


def contenders(selected: Tensor, count: Tensor, mode: str) -> Tensor:
    """bool [B, G, A]: the targets competing for each cell. Fast: those that selected it. Regular: those too, and
    for a cell selected by several targets every target of the image (the original's argmin over all targets)."""
    if mode == "regular":
        return selected | (count > 1).unsqueeze(1)
    return selected


def assign(raw: Tensor, usable: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid, config: LossConfig) -> Assignment:
    """SimOTA of ``config.mode`` for padded targets, float32, no gradient.

    raw [B, A, 5 + C] head outputs; usable bool [B, A], False for a cell with a non-finite output (never assigned,
    nor is one whose box decodes to a non-finite value); gt [B, G, 5] rows (class, cx, cy, w, h); gt_mask bool [B, G].
    """
    boxes = decode_boxes(raw[..., :4], grid)  # [B, A, 4]; the box logits sliced once (a copy in an exported graph)
    usable = usable & torch.isfinite(boxes).all(-1)
    gt_boxes, gt_classes = gt[..., 1:5], gt[..., 0].long()
    in_box, in_centre = candidate_masks(gt_boxes, grid, config)
    near = in_box | in_centre
    near &= gt_mask.unsqueeze(-1) & usable.unsqueeze(1)  # [B, G, A]
    if config.mode == "regular":
        candidates = any_true(near, 1, keepdim=True) & gt_mask.unsqueeze(-1)  # union over the image's targets
    else:
        candidates = near
    ious = pairwise_iou(gt_boxes, boxes, config.mode)  # [B, G, A]
    cost = class_cost(raw[..., 5:], raw[..., 4], gt_classes)
    cost += torch.log(ious + IOU_COST_EPS).neg_().mul_(IOU_COST_WEIGHT)
    in_box &= in_centre
    cost += (~in_box).to(cost.dtype).mul_(OUTSIDE_COST)
    del in_box, in_centre, near
    masked_cost = cost.masked_fill_(~candidates, float("inf"))
    selected = select_topk(masked_cost, candidates, dynamic_ks(ious, candidates, config), config.max_dynamic_k)
    count = count_true(selected, 1)  # [B, A]
    rivals = contenders(selected, count, config.mode)
    _, winner = first_argmin(masked_cost.masked_fill_(~rivals, float("inf")), dim=1)
    fg_mask = count > 0
    winner = winner.masked_fill(~fg_mask, 0).long()  # [B, A]
    matched_iou = ious.gather(1, winner.unsqueeze(1)).squeeze(1)
    return Assignment(
        fg_mask=fg_mask,
        matched_gt=winner.masked_fill(~fg_mask, -1),
        matched_iou=matched_iou.masked_fill(~fg_mask, 0.0),
    )
