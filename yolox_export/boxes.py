"""Box maths shared by the reference losses and the static module.

Units are pixels. The super-gradients and Megvii formulas (``regular_pairwise_iou``, ``fast_pairwise_iou``,
``iou_loss``, ``l1_target``) take boxes as (cx, cy, w, h); mmdetection's (``mmdet_*``) take corners
(x1, y1, x2, y2). ``box_format.BoxFormat`` says which a mode uses. The IoU functions take the four components of each box set as separate,
broadcastable tensors, so one formula serves a reference's candidate list ([n] against [n]) and the static module's
dense grid ([B, G, 1] against [B, 1, A]) with the same floating-point operations in the same order. That is what
makes matched IoUs agree between the two paths.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Union epsilon of super-gradients' ``calculate_bbox_iou_matrix`` (regular assignment).
REGULAR_IOU_EPS = 1e-9
#: Union epsilon of super-gradients' ``IOUloss`` (the IoU loss term).
IOU_LOSS_EPS = 1e-16
#: Epsilon inside the log of the L1 width/height target.
L1_LOG_EPS = 1e-8


def regular_pairwise_iou(ax: Tensor, ay: Tensor, aw: Tensor, ah: Tensor,
                         bx: Tensor, by: Tensor, bw: Tensor, bh: Tensor) -> Tensor:
    """IoU as the regular assignment computes it (``calculate_bbox_iou_matrix``, x1y1x2y2=False).

    Corners from cx ± w / 2, widths re-derived from the corners, intersection sides clamped at 0,
    ``iou = inter / (w1 * h1 + w2 * h2 - inter + 1e-9)``. ``a`` is the target, ``b`` the prediction.
    """
    a_x1, a_x2 = ax - aw / 2, ax + aw / 2
    a_y1, a_y2 = ay - ah / 2, ay + ah / 2
    b_x1, b_x2 = bx - bw / 2, bx + bw / 2
    b_y1, b_y2 = by - bh / 2, by + bh / 2
    inter = (torch.minimum(a_x2, b_x2) - torch.maximum(a_x1, b_x1)).clamp(0) * (
        torch.minimum(a_y2, b_y2) - torch.maximum(a_y1, b_y1)
    ).clamp(0)
    area_a = (a_x2 - a_x1) * (a_y2 - a_y1)
    area_b = (b_x2 - b_x1) * (b_y2 - b_y1)
    return inter / (area_a + area_b - inter + REGULAR_IOU_EPS)


def fast_pairwise_iou(ax: Tensor, ay: Tensor, aw: Tensor, ah: Tensor,
                      bx: Tensor, by: Tensor, bw: Tensor, bh: Tensor) -> Tensor:
    """IoU as the fast assignment computes it (``_calculate_pairwise_bbox_iou``, xyxy=False).

    No epsilon; the intersection is zeroed by a ``(tl < br)`` mask instead of a clamp, and the areas are w * h.
    ``a`` is the target, ``b`` the prediction.
    """
    tl_x = torch.maximum(ax - aw / 2, bx - bw / 2)
    tl_y = torch.maximum(ay - ah / 2, by - bh / 2)
    br_x = torch.minimum(ax + aw / 2, bx + bw / 2)
    br_y = torch.minimum(ay + ah / 2, by + bh / 2)
    overlap = ((tl_x < br_x) & (tl_y < br_y)).to(tl_x.dtype)
    inter = (br_x - tl_x) * (br_y - tl_y) * overlap
    return inter / (aw * ah + bw * bh - inter)


def iou_loss(pred: Tensor, target: Tensor, loss_type: str = "iou") -> Tensor:
    """Per-box IoU loss of super-gradients' ``IOUloss``: ``1 - iou ** 2`` or ``1 - giou.clamp(-1, 1)``.

    ``pred`` and ``target`` are [..., 4] (cx, cy, w, h); the result is [...].
    """
    p_tl, p_br = pred[..., :2] - pred[..., 2:] / 2, pred[..., :2] + pred[..., 2:] / 2
    t_tl, t_br = target[..., :2] - target[..., 2:] / 2, target[..., :2] + target[..., 2:] / 2
    tl = torch.maximum(p_tl, t_tl)
    br = torch.minimum(p_br, t_br)
    area_p = pred[..., 2] * pred[..., 3]
    area_t = target[..., 2] * target[..., 3]
    overlap = (tl < br).to(tl.dtype)
    inter = (br - tl)[..., 0] * (br - tl)[..., 1] * (overlap[..., 0] * overlap[..., 1])
    union = area_p + area_t - inter
    iou = inter / (union + IOU_LOSS_EPS)
    if loss_type == "iou":
        return 1 - iou**2
    if loss_type == "giou":
        c_wh = torch.maximum(p_br, t_br) - torch.minimum(p_tl, t_tl)
        area_c = c_wh[..., 0] * c_wh[..., 1]
        giou = iou - (area_c - union) / area_c.clamp(IOU_LOSS_EPS)
        return 1 - giou.clamp(min=-1.0, max=1.0)
    raise ValueError(f"loss_type must be 'iou' or 'giou', got {loss_type!r}")


def l1_target(gt: Tensor, stride: Tensor, x_shift: Tensor, y_shift: Tensor) -> Tensor:
    """The L1 term's target: the raw head output that would decode exactly to ``gt``.

    ``gt`` is [..., 4] (cx, cy, w, h) in pixels; ``stride``, ``x_shift``, ``y_shift`` are [...] per cell.
    Returns [..., 4]: (cx / s - x, cy / s - y, log(w / s + 1e-8), log(h / s + 1e-8)).
    """
    return torch.stack(
        (
            gt[..., 0] / stride - x_shift,
            gt[..., 1] / stride - y_shift,
            torch.log(gt[..., 2] / stride + L1_LOG_EPS),
            torch.log(gt[..., 3] / stride + L1_LOG_EPS),
        ),
        dim=-1,
    )


#: Union clamp of mmdetection's ``bbox_overlaps`` (``BboxOverlaps2D`` and ``IoULoss`` both use its default eps).
MMDET_UNION_EPS = 1e-6
#: ``IoULoss(eps=1e-16)``: the aligned IoU is clamped at this before it is squared.
MMDET_IOU_LOSS_EPS = 1e-16


def mmdet_pairwise_iou(ax1: Tensor, ay1: Tensor, ax2: Tensor, ay2: Tensor,
                       bx1: Tensor, by1: Tensor, bx2: Tensor, by2: Tensor) -> Tensor:
    """IoU as mmdetection's ``bbox_overlaps`` computes it (mode "iou"), boxes (x1, y1, x2, y2) in pixels.

    Areas from the corners, intersection sides clamped at 0, the union clamped from below at 1e-6 (not added):
    ``iou = inter / max(area_a + area_b - inter, 1e-6)``. ``a`` is the target, ``b`` the prediction (mmdet passes
    them the other way round; the sum of two areas and max / min are symmetric in IEEE arithmetic).
    """
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0) * (
        torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    ).clamp(min=0)
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    return inter / (area_b + area_a - inter).clamp(min=MMDET_UNION_EPS)


def mmdet_iou_loss(pred: Tensor, target: Tensor, loss_type: str = "iou") -> Tensor:
    """Per-box IoU loss of mmdetection's ``IoULoss(mode="square", eps=1e-16)``: ``1 - max(iou, 1e-16) ** 2``, the
    aligned ``bbox_overlaps`` IoU. ``pred`` and ``target`` are [..., 4] (x1, y1, x2, y2); the result is [...]."""
    if loss_type != "iou":
        raise ValueError(f"mmdet mode implements IoULoss(mode='square') only (iou_type 'iou'), got {loss_type!r}")
    iou = mmdet_pairwise_iou(*target.unbind(-1), *pred.unbind(-1)).clamp(min=MMDET_IOU_LOSS_EPS)
    return 1 - iou**2


def mmdet_l1_target(gt: Tensor, stride: Tensor, x_shift: Tensor, y_shift: Tensor) -> Tensor:
    """mmdetection's ``_get_l1_target``: ``gt`` [..., 4] (x1, y1, x2, y2) in pixels to the raw box output that
    decodes to it, against the unshifted prior (x * s, y * s): ((cx - x * s) / s, (cy - y * s) / s,
    log(w / s + 1e-8), log(h / s + 1e-8)), cx = (x1 + x2) / 2, w = x2 - x1. Returns [..., 4]."""
    x1, y1, x2, y2 = gt.unbind(-1)
    return torch.stack(
        (
            ((x1 + x2) / 2 - x_shift * stride) / stride,
            ((y1 + y2) / 2 - y_shift * stride) / stride,
            torch.log((x2 - x1) / stride + L1_LOG_EPS),
            torch.log((y2 - y1) / stride + L1_LOG_EPS),
        ),
        dim=-1,
    )


#: The assignment's IoU formulas by name (``config.ModeRules.pairwise_iou``).
PAIRWISE_IOU = {"regular": regular_pairwise_iou, "fast": fast_pairwise_iou, "mmdet": mmdet_pairwise_iou}
