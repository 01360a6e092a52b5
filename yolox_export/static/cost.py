"""SimOTA's geometry and cost, shared by the dense (``assign``) and windowed (``window``) assignments: the candidate
tests, the pairwise IoU and the class cost, each with the mode's own arithmetic (``config.ModeRules``).

Shape legend: B batch, A cells (all levels, stride order, row-major), G padded targets, C classes. Boxes are in
pixels, in the mode's box format (``config.box_format``: (cx, cy, w, h), or (x1, y1, x2, y2) in mmdet mode).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import LossConfig
from ..grid import Grid


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
