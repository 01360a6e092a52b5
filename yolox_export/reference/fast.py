"""Eager reference: super-gradients' ``YoloXFastDetectionLoss`` (fast SimOTA), in this project's own code.

It keeps the original's structure, flat candidate lists built with ``nonzero`` and ordered with sorts, because it
stands for what users run today and the benchmark times it. Faithful quirks (each tested):

* Candidates are per target: the cells inside that target's box or within 2.5 strides of its centre. The radius is
  hard-coded at 2.5 whatever ``center_sampling_radius`` says, and the tests are written ``cell + r > cx`` etc.
* dynamic k = max(long(sum of that target's own top-10 candidate IoUs * dynamic_ks_bias), 1), so k <= 11 at 1.1.
* Its IoU has no epsilon and a ``(tl < br)`` mask (``boxes.fast_pairwise_iou``).
* Each target keeps its k cheapest candidates; a cell kept by several targets goes to the cheapest of those.
* ``obj_loss_fix`` divides the objectness loss by the number of cells; ``sync_num_fgs`` averages num_fg over the
  ranks of the default process group.

Deliberate differences: no catch-all ``RuntimeError`` -> CPU retry; ``sync_num_fgs`` averages with a SUM all-reduce
divided by the world size (the original's ``ReduceOp.AVG`` exists only on NCCL), the same value on every backend.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assignment import Assignment
from ..boxes import fast_pairwise_iou
from ..config import CANDIDATE_TOPK, IOU_COST_EPS, IOU_COST_WEIGHT, OUTSIDE_COST, LossConfig
from ..distributed import synced_num_fg
from ..grid import Grid
from ..targets import per_image_slots
from .common import AuditRecord, Prepared, ReferenceLoss, bce_class_cost


class FastYoloXLoss(ReferenceLoss):
    """YOLOX loss with fast SimOTA. ``forward(model_output, targets) -> (loss, components)``."""

    modes = ("fast",)

    def __init__(self, strides, num_classes: int, use_l1: bool = False, center_sampling_radius: float = 2.5,
                 iou_type: str = "iou", dynamic_ks_bias: float = 1.1, sync_num_fgs: bool = False,
                 obj_loss_fix: bool = False, validate: bool = True):
        super().__init__(LossConfig(tuple(strides), num_classes, mode="fast", use_l1=use_l1,
                                    center_sampling_radius=center_sampling_radius, iou_type=iou_type,
                                    dynamic_ks_bias=dynamic_ks_bias, sync_num_fgs=sync_num_fgs,
                                    obj_loss_fix=obj_loss_fix), validate)

    def _num_fg(self, assignment: Assignment, prep: Prepared) -> Tensor | float | None:
        if not self.config.sync_num_fgs:
            return None
        count = max(int(assignment.fg_mask.sum()), 1)
        return synced_num_fg(torch.tensor(float(count), device=prep.raw.device))

    @torch.no_grad()
    def _assign(self, prep: Prepared, targets: Tensor, record: AuditRecord | None = None) -> Assignment:
        gt_ids, img_ids, cell_ids, ious = match_candidates(prep, targets, self.config, record)
        batch, cells = prep.raw.shape[:2]
        slots, _ = per_image_slots(targets[:, 0].long(), batch)
        fg_mask = torch.zeros((batch, cells), dtype=torch.bool, device=prep.raw.device)
        matched_gt = torch.full((batch, cells), -1, dtype=torch.long, device=prep.raw.device)
        matched_iou = torch.zeros((batch, cells), dtype=torch.float32, device=prep.raw.device)
        fg_mask[img_ids, cell_ids] = True
        matched_gt[img_ids, cell_ids] = slots[gt_ids]
        matched_iou[img_ids, cell_ids] = ious.float()
        return Assignment(fg_mask, matched_gt, matched_iou)


def initial_candidates(gt_boxes: Tensor, grid: Grid) -> tuple[Tensor, Tensor, Tensor]:
    """(gt_id, cell_id, strong) per candidate pair, from ``_get_initial_matching``'s tests (radius 2.5)."""
    stride = grid.strides.unsqueeze(0)  # [1, A]
    cell_x = (grid.x_shifts.unsqueeze(0) + 0.5) * stride
    cell_y = (grid.y_shifts.unsqueeze(0) + 0.5) * stride
    cx, cy = gt_boxes[:, 0:1], gt_boxes[:, 1:2]  # [N, 1]
    half_w, half_h = 0.5 * gt_boxes[:, 2:3], 0.5 * gt_boxes[:, 3:4]
    in_box = (cell_x > cx - half_w) & (cx + half_w > cell_x) & (cell_y > cy - half_h) & (cy + half_h > cell_y)
    reach = 2.5 * stride
    in_centre = (cell_x + reach > cx) & (cx > cell_x - reach) & (cell_y + reach > cy) & (cy > cell_y - reach)
    candidate = in_box | in_centre  # [N, A]
    gt_ids, cell_ids = candidate.nonzero(as_tuple=True)
    return gt_ids, cell_ids, (in_box & in_centre)[candidate]


def match_candidates(prep: Prepared, targets: Tensor, config: LossConfig,
                     record: AuditRecord | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fast SimOTA over the whole batch. Returns the matches as (gt_id, img_id, cell_id, iou) lists, gt_id being the
    row in ``targets``. ``record`` (``AuditRecord``) gets each row's audit: the k its ranking is cut at (0 without a
    candidate pair: nothing is ranked), the pairs kept before and after the per-cell contest, its candidate pairs
    and their cheapest cost; a fast-mode target never wins a cell it did not keep."""
    gt_boxes = targets[:, 2:6].float()
    gt_ids, cell_ids, strong = initial_candidates(gt_boxes, prep.grid)
    img_ids = targets[:, 0].long()[gt_ids]
    pred = prep.boxes[img_ids, cell_ids].float()
    gt = gt_boxes[gt_ids]
    ious = fast_pairwise_iou(gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3], pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3])
    dynamic_ks = per_target_dynamic_ks(gt_ids, ious, config.dynamic_ks_bias, int(targets.shape[0]))
    cost = bce_class_cost(prep.cls[img_ids, cell_ids], prep.obj[img_ids, cell_ids].unsqueeze(-1), targets[gt_ids, 1],
                          config.num_classes)
    cost = cost + IOU_COST_WEIGHT * -torch.log(ious + IOU_COST_EPS) + OUTSIDE_COST * (~strong)
    if record is not None:
        pairs = torch.bincount(gt_ids, minlength=int(targets.shape[0]))  # [N]
        record.candidates = pairs
        record.k = torch.where(pairs > 0, dynamic_ks, torch.zeros_like(dynamic_ks))
        record.cheapest = record.cheapest.scatter_reduce(0, gt_ids, cost.float(), "amin")
    order = cost.argsort()
    gt_ids, img_ids, cell_ids, ious = gt_ids[order], img_ids[order], cell_ids[order], ious[order]
    keep = ranks_within_groups(gt_ids) < dynamic_ks[gt_ids]
    gt_ids, img_ids, cell_ids, ious = gt_ids[keep], img_ids[keep], cell_ids[keep], ious[keep]
    first = first_of_groups(img_ids * prep.raw.shape[1] + cell_ids)
    if record is not None:
        record.selected = torch.bincount(gt_ids, minlength=int(targets.shape[0]))
        record.cells = torch.bincount(gt_ids[first], minlength=int(targets.shape[0]))
    return gt_ids[first], img_ids[first], cell_ids[first], ious[first]


def per_target_dynamic_ks(gt_ids: Tensor, ious: Tensor, bias: float, num_targets: int) -> Tensor:
    """long [N]: max(long(sum of each target's top-10 candidate IoUs * bias), 1), summed in descending IoU order."""
    ious, by_iou = ious.sort(descending=True)
    ids, by_id = gt_ids[by_iou].sort(stable=True)
    ious = ious[by_id]
    in_top = ranks_within_groups(ids) < CANDIDATE_TOPK
    sums = torch.zeros(num_targets, dtype=ious.dtype, device=ious.device)
    sums.index_put_((ids,), in_top * ious, accumulate=True)
    return (sums * bias).long().clamp(min=1)


def ranks_within_groups(ids: Tensor) -> Tensor:
    """Position of each element among the elements with the same id, in list order."""
    sorted_ids, order = ids.sort(stable=True)
    positions = torch.arange(ids.shape[0], device=ids.device)
    is_start = torch.ones_like(sorted_ids, dtype=torch.bool)
    is_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group_start = torch.where(is_start, positions, torch.zeros_like(positions)).cummax(0).values
    ranks = torch.empty_like(positions)
    ranks[order] = positions - group_start
    return ranks


def first_of_groups(ids: Tensor) -> Tensor:
    """Bool mask of the first element of each id, in list order."""
    return ranks_within_groups(ids) == 0
