"""What both eager references share: input preparation and the loss terms over a list of matched cells.

The loss follows super-gradients: num_fg = max(matched cells in the batch, 1); IoU loss x 5.0 on matched cells;
objectness BCE over every cell; class BCE against one-hot x matched IoU; optional L1 on the raw box logits; each
divided by num_fg (objectness by the number of cells with ``obj_loss_fix``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..assignment import Assignment
from ..boxes import iou_loss, l1_target
from ..config import REG_WEIGHT, LossConfig
from ..grid import Grid, decode_boxes, flatten_levels, image_size, level_shapes, make_grid
from ..loss_base import YoloXLossModule
from ..targets import pad_targets
from ..validation import MisreadingWarnings, check_predictions, check_targets, unwrap_model_output


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


class ReferenceLoss(YoloXLossModule):
    """What both eager references share: the config, input preparation, ``assign`` and the loss over an assignment.
    Subclasses implement ``_assign(prep, targets)``."""

    def __init__(self, config: LossConfig, validate: bool):
        super().__init__(validate)
        self.config = config

    def loss_and_assignment(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor, Assignment]:
        """``forward``'s (loss, components) and the assignment they were computed from, in one pass."""
        prep, targets = prepare(model_output, targets, self.config, self.validate, self._misreadings)
        assignment = self._assign(prep, targets)
        loss, components = assignment_loss(prep, targets, assignment, self.config, num_fg=self._num_fg(assignment, prep))
        return loss, components, assignment

    @torch.no_grad()
    def assign(self, model_output, targets: Tensor) -> Assignment:
        prep, targets = prepare(model_output, targets, self.config, self.validate, self._misreadings)
        return self._assign(prep, targets)

    def _assign(self, prep: Prepared, targets: Tensor) -> Assignment:
        raise NotImplementedError

    def _num_fg(self, assignment: Assignment, prep: Prepared) -> Tensor | float | None:
        """num_fg override; None means max(matched cells, 1)."""
        return None


def prepare(model_output, targets: Tensor, config: LossConfig, validate: bool,
            misreadings: MisreadingWarnings | None = None) -> tuple[Prepared, Tensor]:
    """Validate (optionally; ``misreadings`` warns about targets that look misread) and flatten the head output;
    return it with the targets."""
    predictions = unwrap_model_output(model_output)
    if validate:
        check_predictions(predictions, config.strides, config.num_classes)
        check_targets(targets, predictions[0].shape[0], config.num_classes, device=predictions[0].device)
        if misreadings is not None:
            misreadings.check(targets[:, 2:6], image_size(level_shapes(predictions), config.strides))
    raw = flatten_levels(predictions)
    grid = make_grid(level_shapes(predictions), config.strides, device=raw.device, dtype=raw.dtype)
    return Prepared(raw, decode_boxes(raw, grid), grid), targets


def matched_loss(prep: Prepared, img_ids: Tensor, cell_ids: Tensor, gt_boxes: Tensor, gt_classes: Tensor,
                 ious: Tensor, num_gts: int, config: LossConfig, num_fg: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
    """Loss and detached components [iou, obj, cls, l1, num_fg / num_gts, loss] over the matched cells.

    ``img_ids``, ``cell_ids`` [n] locate the matched cells; ``gt_boxes`` [n, 4], ``gt_classes`` [n], ``ious`` [n]
    are their targets. ``num_fg`` overrides max(n, 1) (fast's synchronised count).
    """
    if num_fg is None:
        num_fg = max(int(img_ids.shape[0]), 1)
    batch, cells = prep.raw.shape[:2]
    obj_target = torch.zeros((batch, cells), dtype=prep.raw.dtype, device=prep.raw.device)
    obj_target[img_ids, cell_ids] = 1
    cls_target = F.one_hot(gt_classes.long(), config.num_classes) * ious.unsqueeze(-1)
    loss_iou = iou_loss(prep.boxes[img_ids, cell_ids], gt_boxes, config.iou_type).sum() / num_fg
    obj_divisor = max(batch * cells, 1) if (config.mode == "fast" and config.obj_loss_fix) else num_fg
    loss_obj = F.binary_cross_entropy_with_logits(prep.obj, obj_target, reduction="none").sum() / obj_divisor
    loss_cls = F.binary_cross_entropy_with_logits(prep.cls[img_ids, cell_ids], cls_target, reduction="none").sum() / num_fg
    if config.use_l1:
        target = l1_target(gt_boxes, prep.grid.strides[cell_ids], prep.grid.x_shifts[cell_ids], prep.grid.y_shifts[cell_ids])
        loss_l1 = (prep.raw[img_ids, cell_ids, :4] - target).abs().sum() / num_fg
    else:
        loss_l1 = torch.zeros((), dtype=loss_iou.dtype, device=loss_iou.device)
    loss = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
    fg_ratio = torch.as_tensor(num_fg, dtype=loss.dtype, device=loss.device) / max(num_gts, 1)
    components = torch.stack((loss_iou, loss_obj, loss_cls, loss_l1, fg_ratio.reshape(()), loss)).detach()
    return loss, components


def assignment_loss(prep: Prepared, targets: Tensor, assignment: Assignment, config: LossConfig,
                    num_fg: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
    """``matched_loss`` over the fg cells of an ``Assignment``, in batch-then-cell order."""
    img_ids, cell_ids = assignment.fg_mask.nonzero(as_tuple=True)
    gt, _ = pad_targets(targets, prep.raw.shape[0], validate=False)  # [B, G, 5]
    matched = gt[img_ids, assignment.matched_gt[img_ids, cell_ids]]  # [n, 5]
    return matched_loss(prep, img_ids, cell_ids, matched[:, 1:], matched[:, 0], assignment.matched_iou[img_ids, cell_ids],
                        int(targets.shape[0]), config, num_fg)


def bce_class_cost(cls_logits: Tensor, obj_logits: Tensor, classes: Tensor, num_classes: int) -> Tensor:
    """SimOTA's class cost, computed as the references do: BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot).sum(-1).

    ``cls_logits`` [..., C] and ``obj_logits`` [..., 1] broadcast against ``classes`` [...]; float32, autocast off.
    ``F.binary_cross_entropy`` clamps each log at -100.
    """
    with torch.autocast(device_type=cls_logits.device.type, enabled=False):
        p = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid()).sqrt()
        onehot = F.one_hot(classes.long(), num_classes).float()
        p = p.expand(onehot.shape)
        return F.binary_cross_entropy(p, onehot, reduction="none").sum(-1)
