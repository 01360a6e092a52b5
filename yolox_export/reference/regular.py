"""Eager reference: super-gradients' ``YoloXDetectionLoss`` (regular SimOTA), in this project's own code.

It keeps the original's structure, a loop over images and a top-k per target, because it stands for what users run
today and the benchmark times it. Faithful quirks (each tested):

* Candidates of an image are the union over ALL its targets of cells whose centre is inside the box or within
  ``center_sampling_radius * stride`` of the box centre (strict ``>``); every target is scored on that whole union.
* dynamic k = max(int(sum of the top-min(10, n) IoUs over the union), 1).
* cost = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot).sum(-1) + 3 * -log(iou + 1e-8) + 1e5 * !(in_box & in_centre),
  with ``F.binary_cross_entropy``'s -100 log clamp; pairwise IoU with union eps 1e-9 (the IoU loss uses 1e-16).
* A cell selected by several targets goes to the argmin of cost over ALL the image's targets, also ones that did
  not select it.

Deliberate differences from the original: no catch-all ``RuntimeError`` -> CPU retry (errors surface), and an image
whose targets have no candidate cell at all gets no assignment (the original raises inside its loop).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..assignment import Assignment
from ..boxes import regular_pairwise_iou
from ..config import CANDIDATE_TOPK, IOU_COST_EPS, IOU_COST_WEIGHT, OUTSIDE_COST, LossConfig
from ..grid import Grid
from .common import AuditRecord, Prepared, ReferenceLoss, bce_class_cost


class RegularYoloXLoss(ReferenceLoss):
    """YOLOX loss with regular SimOTA. ``forward(model_output, targets) -> (loss, components)``."""

    modes = ("regular",)

    def __init__(self, strides, num_classes: int, use_l1: bool = False, center_sampling_radius: float = 2.5,
                 iou_type: str = "iou", validate: bool = True):
        super().__init__(LossConfig(tuple(strides), num_classes, mode="regular", use_l1=use_l1,
                                    center_sampling_radius=center_sampling_radius, iou_type=iou_type), validate)

    @torch.no_grad()
    def _assign(self, prep: Prepared, targets: Tensor, record: AuditRecord | None = None) -> Assignment:
        return assign_per_image(prep, targets, self.config, assign_image, record)


def assign_per_image(prep: Prepared, targets: Tensor, config: LossConfig, assign_one,
                     record: AuditRecord | None = None) -> Assignment:
    """The references' loop over images: ``assign_one(boxes, cls, obj, gt_boxes, gt_classes, grid, config, note)``
    for each image with targets, returning (fg [A], matched target [n_fg], matched IoU [n_fg]); ``note`` is None,
    or with ``record`` its ``AuditRecord.note`` for the image's target rows."""
    batch, cells = prep.raw.shape[:2]
    fg_mask = torch.zeros((batch, cells), dtype=torch.bool, device=prep.raw.device)
    matched_gt = torch.full((batch, cells), -1, dtype=torch.long, device=prep.raw.device)
    matched_iou = torch.zeros((batch, cells), dtype=torch.float32, device=prep.raw.device)
    for b in range(batch):
        rows = (targets[:, 0] == b).nonzero().squeeze(1)
        labels = targets[rows]
        if labels.shape[0] == 0:
            continue
        note = None if record is None else functools.partial(record.note, rows)
        fg, gt_index, iou = assign_one(prep.boxes[b].float(), prep.cls[b], prep.obj[b].unsqueeze(-1),
                                       labels[:, 2:6].float(), labels[:, 1], prep.grid, config, note)
        fg_mask[b], matched_gt[b, fg], matched_iou[b, fg] = fg, gt_index, iou
    return Assignment(fg_mask, matched_gt, matched_iou)


def in_boxes_info(gt_boxes: Tensor, grid: Grid, radius: float) -> tuple[Tensor, Tensor]:
    """(in_box, in_centre), each bool [n, A], computed as ``get_in_boxes_info`` does (deltas, min > 0)."""
    stride = grid.strides
    x_centers = (grid.x_shifts * stride + 0.5 * stride).unsqueeze(0)  # [1, A]
    y_centers = (grid.y_shifts * stride + 0.5 * stride).unsqueeze(0)
    cx, cy, w, h = (gt_boxes[:, i].unsqueeze(1) for i in range(4))  # [n, 1]
    box_deltas = torch.stack(
        (x_centers - (cx - 0.5 * w), y_centers - (cy - 0.5 * h), (cx + 0.5 * w) - x_centers, (cy + 0.5 * h) - y_centers), 2
    )
    reach = radius * stride.unsqueeze(0)  # [1, A]
    centre_deltas = torch.stack(
        (x_centers - (cx - reach), y_centers - (cy - reach), (cx + reach) - x_centers, (cy + reach) - y_centers), 2
    )
    return box_deltas.min(dim=-1).values > 0.0, centre_deltas.min(dim=-1).values > 0.0


def assign_image(boxes: Tensor, cls_logits: Tensor, obj_logits: Tensor, gt_boxes: Tensor, gt_classes: Tensor,
                 grid: Grid, config: LossConfig, note=None) -> tuple[Tensor, Tensor, Tensor]:
    """Regular SimOTA for one image with n >= 1 targets.

    Returns fg [A] bool, and for the fg cells in cell order: matched target index [n_fg] and its IoU [n_fg].
    ``note`` (``AuditRecord.note`` of the image's rows) gets the matching's audit.
    """
    in_box, in_centre = in_boxes_info(gt_boxes, grid, config.center_radius)
    candidates = in_box.any(0) | in_centre.any(0)  # [A], union over the image's targets
    fg = torch.zeros_like(candidates)
    if not bool(candidates.any()):
        return fg, torch.zeros(0, dtype=torch.long, device=fg.device), torch.zeros(0, device=fg.device)
    strong = in_box[:, candidates] & in_centre[:, candidates]  # [n, m]
    pred = boxes[candidates]  # [m, 4]
    ious = regular_pairwise_iou(*(gt_boxes[:, i].unsqueeze(1) for i in range(4)), *(pred[:, i].unsqueeze(0) for i in range(4)))
    cls_cost = bce_class_cost(cls_logits[candidates].unsqueeze(0), obj_logits[candidates].unsqueeze(0),
                              gt_classes.unsqueeze(1).expand(-1, pred.shape[0]), config.num_classes)
    cost = cls_cost + IOU_COST_WEIGHT * -torch.log(ious + IOU_COST_EPS) + OUTSIDE_COST * (~strong)
    seen = {} if note is not None else None
    matching = dynamic_k_matching(cost, ious, seen)  # [n, m]
    if note is not None:
        note(seen["k"], seen["selected"], matching, (in_box | in_centre)[:, candidates], cost)
    chosen = matching.any(0)
    fg[candidates] = chosen
    return fg, matching[:, chosen].to(torch.uint8).argmax(0), (matching * ious).sum(0)[chosen]


def dynamic_k_matching(cost: Tensor, ious: Tensor, seen: dict | None = None) -> Tensor:
    """Bool [n, m]: each target's dynamic-k cheapest candidates, then one target per cell by the argmin of cost over
    all targets. ``seen`` (a dict) gets the ks passed to the top-ks ("k") and the matching before the contest
    ("selected", bool [n, m])."""
    topk_ious = torch.topk(ious, min(CANDIDATE_TOPK, ious.shape[1]), dim=1).values
    dynamic_ks = torch.clamp(topk_ious.sum(1).int(), min=1).tolist()
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g, k in enumerate(dynamic_ks):
        matching[g, torch.topk(cost[g], k=k, largest=False).indices] = True
    if seen is not None:
        seen.update(k=dynamic_ks, selected=matching.clone())
    contested = matching.sum(0) > 1
    if bool(contested.any()):
        winners = cost[:, contested].min(dim=0).indices
        matching[:, contested] = False
        matching[winners, contested.nonzero().squeeze(1)] = True
    return matching
