"""Eager reference: mmdetection 3.3's ``YOLOXHead.loss_by_feat`` with ``SimOTAAssigner``, in this project's own code.

It keeps the original's structure, a loop over images, an assigner that takes the image's candidate cells, and a
loop over targets whose top-k reads each k back from the device, because it stands for what mmdetection users run
today and the benchmark times it. Boxes are (x1, y1, x2, y2) in pixels, end to end (targets and decoded boxes).
Faithful quirks (each tested):

* Decoding against the unshifted priors (x * s, y * s): centre = logit * s + x * s, size = exp(logit) * s
  (``grid.decode_corners``); the assigner gets the cell centres x * s + s * 0.5.
* Candidates (the valid mask): cell centre strictly inside any target box, OR strictly within
  ``center_sampling_radius * s`` (2.5) of any target's centre ((x1 + x2) / 2, (y1 + y2) / 2); every target of the
  image is scored on that union; 1e5 for a cell not in that target's box AND centre region.
* IoU: ``bbox_overlaps`` (corners, sides clamped at 0, union clamped from below at 1e-6).
* cost = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot).sum(-1) (float32, torch's -100 log clamp) * 1
  + (-log(iou + 1e-7)) * 3 + 1e5 * !(in box & in centre).
* dynamic k = clamp(int(sum of the top-min(10, m) IoUs over the m candidates), 1), no bias; each target takes its
  k cheapest; a cell taken by several targets goes to the argmin of cost over ALL the image's targets.
* Loss (``matched_loss`` with the corner-box terms of ``box_format.CORNERS``): objectness BCE over every cell,
  class BCE against one-hot x matched IoU, 5 x sum(1 - max(iou, 1e-16) ** 2) (aligned ``bbox_overlaps``), with
  ``use_l1`` the L1 against ((cx - x * s) / s, (cy - y * s) / s, log(w / s + 1e-8), log(h / s + 1e-8)); each
  divided by max(reduce_mean(num_pos), 1): the batch's positive count, averaged over the default process group when
  one is initialised, then clamped.

mmdetection returns a dict (``loss_cls``, ``loss_bbox`` = 5 x the IoU term, ``loss_obj``, ``loss_l1``); this
reference returns the project's (loss, components) like the others, whose sum and terms are the same numbers
(``integrations.mmdet`` gives the dict). An image without targets, or whose targets have no candidate cell, is all
background, as in mmdetection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..assignment import Assignment
from ..boxes import mmdet_pairwise_iou
from ..config import CANDIDATE_TOPK, CLS_COST_WEIGHT, IOU_COST_WEIGHT, MMDET_IOU_COST_EPS, OUTSIDE_COST, LossConfig
from ..distributed import batch_num_fg
from ..grid import Grid
from .common import AuditRecord, Prepared, ReferenceLoss
from .regular import assign_per_image


class MMDetYoloXLoss(ReferenceLoss):
    """YOLOX loss of mmdetection 3.3 (``YOLOXHead.loss_by_feat``, ``SimOTAAssigner``).
    ``forward(model_output, targets) -> (loss, components)``; targets [N, 6] rows (image, class, x1, y1, x2, y2)."""

    modes = ("mmdet",)

    def __init__(self, strides, num_classes: int, use_l1: bool = False, center_sampling_radius: float = 2.5,
                 validate: bool = True):
        super().__init__(LossConfig(tuple(strides), num_classes, mode="mmdet", use_l1=use_l1,
                                    center_sampling_radius=center_sampling_radius), validate)

    @torch.no_grad()
    def _assign(self, prep: Prepared, targets: Tensor, record: AuditRecord | None = None) -> Assignment:
        return assign_per_image(prep, targets, self.config, assign_image, record)

    def _num_fg(self, assignment: Assignment, prep: Prepared) -> Tensor:
        count = torch.tensor(float(assignment.fg_mask.sum()), device=prep.raw.device)  # num_pos
        return batch_num_fg(count, self.config)  # max(reduce_mean(num_pos), 1)


def in_gt_and_in_center_info(priors: Tensor, strides: Tensor, gt_boxes: Tensor,
                             radius: float) -> tuple[Tensor, Tensor]:
    """(in_gts, in_cts), each bool [A, n], as ``get_in_gt_and_in_center_info`` computes them: the cell centres
    ``priors`` [A, 2] against the boxes [n, 4] (deltas stacked, min > 0), and against each box centre's square of
    half-side ``radius`` * s."""
    x = priors[:, 0].unsqueeze(1)  # [A, 1]
    y = priors[:, 1].unsqueeze(1)
    stride = strides.unsqueeze(1)  # [A, 1]
    deltas = torch.stack((x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x, gt_boxes[:, 3] - y), dim=1)
    in_gts = deltas.min(dim=1).values > 0  # [A, n]
    cx = (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2.0
    cy = (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2.0
    centre_deltas = torch.stack((x - (cx - radius * stride), y - (cy - radius * stride),
                                 (cx + radius * stride) - x, (cy + radius * stride) - y), dim=1)
    return in_gts, centre_deltas.min(dim=1).values > 0


def bbox_overlaps(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """[m, n] IoU of the cells' corner boxes [m, 4] against the targets [n, 4], as mmdetection's ``bbox_overlaps``
    (mode "iou"): ``boxes.mmdet_pairwise_iou``, the formula the static module uses, broadcast [1, n] x [m, 1]."""
    return mmdet_pairwise_iou(*boxes2.unsqueeze(0).unbind(-1), *boxes1.unsqueeze(1).unbind(-1))


def assign_image(boxes: Tensor, cls_logits: Tensor, obj_logits: Tensor, gt_boxes: Tensor, gt_classes: Tensor,
                 grid: Grid, config: LossConfig, note=None) -> tuple[Tensor, Tensor, Tensor]:
    """``_get_targets_single`` and ``SimOTAAssigner.assign`` for one image with n >= 1 targets: decoded boxes
    [A, 4], logits [A, C] and [A, 1], targets [n, 4] / [n]. The scores sqrt(sigmoid(cls) * sigmoid(obj)) are
    computed for every cell, as mmdetection does before it calls the assigner. Returns fg [A] bool, and for the fg
    cells in cell order: the matched target index [n_fg] and its IoU [n_fg]. ``note`` (``AuditRecord.note`` of the
    image's rows) gets the matching's audit."""
    scores = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid()).sqrt()  # [A, C]
    stride = grid.strides
    priors = torch.stack((grid.x_shifts * stride + stride * 0.5, grid.y_shifts * stride + stride * 0.5), dim=-1)
    in_gts, in_cts = in_gt_and_in_center_info(priors, stride, gt_boxes, config.center_radius)
    valid = in_gts.any(1) | in_cts.any(1)  # [A]
    fg = torch.zeros_like(valid)
    if not bool(valid.any()):
        return fg, torch.zeros(0, dtype=torch.long, device=fg.device), torch.zeros(0, device=fg.device)
    in_boxes_and_centers = in_gts[valid] & in_cts[valid]  # [m, n]
    valid_boxes = boxes[valid]  # [m, 4]
    num_valid, num_gt = valid_boxes.shape[0], gt_boxes.shape[0]
    ious = bbox_overlaps(valid_boxes, gt_boxes)  # [m, n]
    iou_cost = -torch.log(ious + MMDET_IOU_COST_EPS)
    onehot = F.one_hot(gt_classes.long(), config.num_classes).float().unsqueeze(0).repeat(num_valid, 1, 1)
    valid_scores = scores[valid].unsqueeze(1).repeat(1, num_gt, 1)  # [m, n, C]
    cls_cost = F.binary_cross_entropy(valid_scores, onehot, reduction="none").sum(-1)
    cost = cls_cost * CLS_COST_WEIGHT + iou_cost * IOU_COST_WEIGHT + (~in_boxes_and_centers) * OUTSIDE_COST
    seen = {} if note is not None else None
    matching = dynamic_k_matching(cost, ious, seen)  # [m, n]
    if note is not None:
        own = (in_gts | in_cts)[valid]  # [m, n]
        note(seen["k"], seen["selected"].T, matching.T, own.T, cost.T)
    chosen = matching.any(1)
    fg[valid] = chosen
    return fg, matching[chosen].to(torch.uint8).argmax(1), (matching * ious).sum(1)[chosen]


def dynamic_k_matching(cost: Tensor, ious: Tensor, seen: dict | None = None) -> Tensor:
    """bool [m, n]: ``SimOTAAssigner.dynamic_k_matching``: each target's dynamic-k cheapest cells (one top-k per
    target, its k read back), then each cell taken by several targets to the argmin of cost over all targets.
    ``seen`` (a dict) gets the ks passed to the top-ks ("k" [n]) and the matching before the contest ("selected",
    bool [m, n])."""
    topk_ious, _ = torch.topk(ious, min(CANDIDATE_TOPK, ious.shape[0]), dim=0)
    dynamic_ks = torch.clamp(topk_ious.sum(0).int(), min=1)
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    for g in range(cost.shape[1]):
        _, pos = torch.topk(cost[:, g], k=int(dynamic_ks[g]), largest=False)
        matching[:, g][pos] = 1
    if seen is not None:
        seen.update(k=dynamic_ks.long(), selected=matching.bool())
    contested = matching.sum(1) > 1
    if contested.sum() > 0:
        winners = torch.min(cost[contested, :], dim=1).indices
        matching[contested, :] *= 0
        matching[contested, winners] = 1
    return matching.bool()
