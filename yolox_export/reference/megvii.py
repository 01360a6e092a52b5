"""Eager reference: Megvii YOLOX's current ``YOLOXHead.get_losses`` / ``get_assignments`` / ``simota_matching``, in
this project's own code.

It keeps the original's structure, a loop over images and one top-k per target, because it stands for what Megvii
users run today and the benchmark times it. Boxes are (cx, cy, w, h) in pixels. Faithful quirks (each tested):

* Candidates come from the centre test alone, radius 1.5 strides (``config.MEGVII_CENTER_RADIUS``, whatever
  ``center_sampling_radius`` says), no in-box test: with x_c = (x_shift + 0.5) * s and r = 1.5 * s, a cell is a
  candidate of a target when min(x_c - (cx - r), y_c - (cy - r), (cx + r) - x_c, (cy + r) - y_c) > 0 (strict).
* The image's union U of those cells is scored for EVERY target of the image; a target's own centre cells cost
  normally, the other cells of U carry the penalty 1e6 (``config.MEGVII_OUTSIDE_COST``).
* cost = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot).sum(-1) (float32, autocast off, torch's -100 log clamp)
  + 3 * -log(iou + 1e-8) + 1e6 * !centre. The IoU (``bboxes_iou(..., xyxy=False)``) has no epsilon and a
  ``(tl < br)`` mask, areas w * h: the same formula as ``boxes.fast_pairwise_iou``.
* dynamic k = clamp(int(sum of the top-min(10, |U|) IoUs over U), 1), no bias; each target takes its k cheapest
  cells of U; a cell taken by several targets goes to the argmin of cost over ALL the image's targets.
* The loss is super-gradients' (the same terms, ``reference.common``): IoU loss 1 - iou^2 x 5 (Megvii's
  ``IOUloss``; ``iou_type="giou"`` is its other loss_type), objectness BCE over every cell, class BCE against
  one-hot x matched IoU, optional L1 on the raw box logits, each / max(num_fg, 1).

Deliberate difference: Megvii raises inside ``topk`` for an image whose targets have no centre cell at all (U is
empty); here that image gets no assignment (all its cells background), like an image without targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assignment import Assignment
from ..boxes import fast_pairwise_iou
from ..config import IOU_COST_EPS, IOU_COST_WEIGHT, MEGVII_OUTSIDE_COST, LossConfig
from ..grid import Grid
from .common import AuditRecord, Prepared, ReferenceLoss, bce_class_cost
from .regular import assign_per_image, dynamic_k_matching


class MegviiYoloXLoss(ReferenceLoss):
    """YOLOX loss with Megvii's SimOTA. ``forward(model_output, targets) -> (loss, components)``."""

    modes = ("megvii",)

    def __init__(self, strides, num_classes: int, use_l1: bool = False, iou_type: str = "iou", validate: bool = True):
        super().__init__(LossConfig(tuple(strides), num_classes, mode="megvii", use_l1=use_l1, iou_type=iou_type),
                         validate)

    @torch.no_grad()
    def _assign(self, prep: Prepared, targets: Tensor, record: AuditRecord | None = None) -> Assignment:
        return assign_per_image(prep, targets, self.config, assign_image, record)


def geometry_constraint(gt_boxes: Tensor, grid: Grid, radius: float) -> Tensor:
    """bool [n, A]: the centre test of ``get_geometry_constraint`` (deltas stacked, min > 0), x_c = (x + 0.5) * s."""
    stride = grid.strides
    x_centers = ((grid.x_shifts + 0.5) * stride).unsqueeze(0)  # [1, A]
    y_centers = ((grid.y_shifts + 0.5) * stride).unsqueeze(0)
    reach = (stride * radius).unsqueeze(0)  # [1, A]
    cx, cy = gt_boxes[:, 0:1], gt_boxes[:, 1:2]  # [n, 1]
    deltas = torch.stack((x_centers - (cx - reach), y_centers - (cy - reach), (cx + reach) - x_centers,
                          (cy + reach) - y_centers), 2)  # [n, A, 4]
    return deltas.min(dim=-1).values > 0.0


def assign_image(boxes: Tensor, cls_logits: Tensor, obj_logits: Tensor, gt_boxes: Tensor, gt_classes: Tensor,
                 grid: Grid, config: LossConfig, note=None) -> tuple[Tensor, Tensor, Tensor]:
    """Megvii's SimOTA for one image with n >= 1 targets.

    Returns fg [A] bool, and for the fg cells in cell order: matched target index [n_fg] and its IoU [n_fg].
    ``note`` (``AuditRecord.note`` of the image's rows) gets the matching's audit.
    """
    in_centre = geometry_constraint(gt_boxes, grid, config.center_radius)  # [n, A]
    union = in_centre.any(0)  # [A]: anchor_filter
    fg = torch.zeros_like(union)
    if not bool(union.any()):  # Megvii's topk raises here; this image gets no assignment
        return fg, torch.zeros(0, dtype=torch.long, device=fg.device), torch.zeros(0, device=fg.device)
    geometry = in_centre[:, union]  # [n, m]
    pred = boxes[union]  # [m, 4]
    ious = fast_pairwise_iou(*(gt_boxes[:, i].unsqueeze(1) for i in range(4)), *(pred[:, i].unsqueeze(0) for i in range(4)))
    cls_cost = bce_class_cost(cls_logits[union].unsqueeze(0), obj_logits[union].unsqueeze(0),
                              gt_classes.unsqueeze(1).expand(-1, pred.shape[0]), config.num_classes)
    cost = cls_cost + IOU_COST_WEIGHT * -torch.log(ious + IOU_COST_EPS) + MEGVII_OUTSIDE_COST * (~geometry)
    seen = {} if note is not None else None
    matching = dynamic_k_matching(cost, ious, seen)  # [n, m]: Megvii's simota_matching, the same steps as regular's
    if note is not None:
        note(seen["k"], seen["selected"], matching, geometry, cost)
    chosen = matching.any(0)
    fg[union] = chosen
    return fg, matching[:, chosen].to(torch.uint8).argmax(0), (matching * ious).sum(0)[chosen]
