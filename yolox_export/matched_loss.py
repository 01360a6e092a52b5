"""The YOLOX loss over a list of matched cells, in the references' formulation and layout; the one definition that
the eager references and the static module's reference form (``static.padded.reference_loss``, with ``max_gt=None``)
both call.

The loss follows super-gradients: num_fg = max(matched cells in the batch, 1); IoU loss x 5.0 on matched cells;
objectness BCE over every cell; class BCE against one-hot x matched IoU; optional L1 on the raw box logits; each
divided by num_fg (objectness by the number of cells with ``obj_loss_fix``). The matched cells are taken in
batch-then-cell order as [n, ...] tensors (boolean indexing: eager only, a data-dependent shape); the static graph's
own form of the same terms is ``static.padded.masked_loss``.

Shape legend: B batch, A cells, G padded targets, C classes, n matched cells of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .assignment import Assignment
from .config import REG_WEIGHT, LossConfig
from .grid import Grid


@dataclass
class Prepared:
    """Flattened head output of a batch: raw [B, A, 5 + C], decoded boxes [B, A, 4], and the grid."""

    raw: Tensor
    boxes: Tensor
    grid: Grid

    @property
    def obj(self) -> Tensor:
        return self.raw[..., 4]  # [B, A]

    @property
    def cls(self) -> Tensor:
        return self.raw[..., 5:]  # [B, A, C]


@dataclass
class MatchedTerms:
    """The loss's element-wise terms over the matched cells, before any sum: ``iou`` [n] (the mode's IoU loss,
    unweighted), ``obj`` [B, A] (objectness BCE of every cell), ``cls`` [n, C], ``l1`` [n, 4] or None without
    L1; ``img_ids`` [n] the matched cells' images; ``num_fg`` and ``obj_divisor`` what the sums are divided by."""

    iou: Tensor
    obj: Tensor
    cls: Tensor
    l1: Tensor | None
    img_ids: Tensor
    num_fg: Tensor | float
    obj_divisor: Tensor | float

    def image_loss(self) -> Tensor:
        """[B]: each image's share of the loss, its terms weighted and divided as in the total (its sum is the
        loss, to float32 rounding of the summation order)."""
        batch = self.obj.shape[0]

        def per_image(values: Tensor) -> Tensor:  # [n, ...] -> [B]
            sums = values.flatten(1).sum(-1) if values.dim() > 1 else values
            return torch.zeros(batch, dtype=sums.dtype, device=sums.device).index_add(0, self.img_ids, sums)

        shares = REG_WEIGHT * per_image(self.iou) / self.num_fg + self.obj.sum(-1) / self.obj_divisor
        shares = shares + per_image(self.cls) / self.num_fg
        return shares if self.l1 is None else shares + per_image(self.l1) / self.num_fg


def matched_terms(prep: Prepared, img_ids: Tensor, cell_ids: Tensor, gt_boxes: Tensor, gt_classes: Tensor,
                  ious: Tensor, config: LossConfig, num_fg: Tensor | float | None = None) -> MatchedTerms:
    """The element-wise terms over the matched cells: ``img_ids``, ``cell_ids`` [n] locate them; ``gt_boxes``
    [n, 4], ``gt_classes`` [n] and ``ious`` [n] are their targets. ``num_fg`` overrides max(n, 1) (a count averaged
    over ranks)."""
    if num_fg is None:
        num_fg = max(int(img_ids.shape[0]), 1)
    batch, cells = prep.raw.shape[:2]
    obj_target = torch.zeros((batch, cells), dtype=prep.raw.dtype, device=prep.raw.device)
    obj_target[img_ids, cell_ids] = 1
    cls_target = F.one_hot(gt_classes.long(), config.num_classes) * ious.unsqueeze(-1)
    form = config.box_format
    iou = form.iou_loss(prep.boxes[img_ids, cell_ids], gt_boxes, config.iou_type)
    obj_divisor = max(batch * cells, 1) if config.obj_over_all_cells else num_fg
    obj = F.binary_cross_entropy_with_logits(prep.obj, obj_target, reduction="none")
    cls = F.binary_cross_entropy_with_logits(prep.cls[img_ids, cell_ids], cls_target, reduction="none")
    l1 = None
    if config.use_l1:
        target = form.l1_target(gt_boxes, prep.grid.strides[cell_ids], prep.grid.x_shifts[cell_ids], prep.grid.y_shifts[cell_ids])
        l1 = (prep.raw[img_ids, cell_ids, :4] - target).abs()
    return MatchedTerms(iou, obj, cls, l1, img_ids, num_fg, obj_divisor)


def terms_loss(terms: MatchedTerms, num_gts: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Loss, detached components [iou, obj, cls, l1, num_fg / num_gts, loss] and the four normalised terms (iou,
    obj, cls, l1; each with its gradient; loss = 5 * iou + obj + cls + l1) of ``matched_terms``; ``num_gts`` is the
    number of real targets."""
    num_fg = terms.num_fg
    loss_iou = terms.iou.sum() / num_fg
    loss_obj = terms.obj.sum() / terms.obj_divisor
    loss_cls = terms.cls.sum() / num_fg
    if terms.l1 is not None:
        loss_l1 = terms.l1.sum() / num_fg
    else:
        loss_l1 = torch.zeros((), dtype=loss_iou.dtype, device=loss_iou.device)
    loss = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
    fg_ratio = torch.as_tensor(num_fg, dtype=loss.dtype, device=loss.device) / max(num_gts, 1)
    components = torch.stack((loss_iou, loss_obj, loss_cls, loss_l1, fg_ratio.reshape(()), loss)).detach()
    return loss, components, (loss_iou, loss_obj, loss_cls, loss_l1)


def padded_assignment_terms(prep: Prepared, gt: Tensor, assignment: Assignment, config: LossConfig,
                            num_fg: Tensor | float | None = None) -> MatchedTerms:
    """``matched_terms`` over the fg cells of an ``Assignment`` against padded targets gt [B, G, 5] (class and box
    in the mode's format), in batch-then-cell order."""
    img_ids, cell_ids = assignment.fg_mask.nonzero(as_tuple=True)  # [n]
    matched = gt[img_ids, assignment.matched_gt[img_ids, cell_ids]]  # [n, 5]
    return matched_terms(prep, img_ids, cell_ids, matched[:, 1:], matched[:, 0],
                         assignment.matched_iou[img_ids, cell_ids], config, num_fg)


def padded_assignment_loss(prep: Prepared, gt: Tensor, assignment: Assignment, num_gts: int, config: LossConfig,
                           num_fg: Tensor | float | None = None) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """``terms_loss`` over the fg cells of an ``Assignment`` against padded targets gt [B, G, 5] (class and box in
    the mode's format), in batch-then-cell order; ``num_gts`` is the number of real targets."""
    return terms_loss(padded_assignment_terms(prep, gt, assignment, config, num_fg), num_gts)
