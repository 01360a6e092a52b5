"""What the eager references share: input preparation, the loss over an assignment (``matched_loss``, the one
definition of the loss terms, shared with the static module's synchronising drop-in) and SimOTA's class cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..assignment import Assignment
from ..config import LossConfig
from ..grid import flatten_levels, image_size, level_shapes, make_grid
from ..loss_base import YoloXLossModule
from ..matched_loss import Prepared, padded_assignment_loss
from ..targets import pad_targets
from ..validation import MisreadingWarnings, check_predictions, check_targets, unwrap_model_output


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
        check_targets(targets, predictions[0].shape[0], config.num_classes, device=predictions[0].device,
                      box_format=config.box_format)
        if misreadings is not None:
            misreadings.check(targets[:, 2:6], image_size(level_shapes(predictions), config.strides),
                              config.box_format)
    raw = flatten_levels(predictions)
    grid = make_grid(level_shapes(predictions), config.strides, device=raw.device, dtype=raw.dtype)
    return Prepared(raw, config.box_format.decode(raw, grid), grid), targets


def assignment_loss(prep: Prepared, targets: Tensor, assignment: Assignment, config: LossConfig,
                    num_fg: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
    """``matched_loss`` over the fg cells of an ``Assignment``, in batch-then-cell order."""
    gt, _ = pad_targets(targets, prep.raw.shape[0], validate=False)  # [B, G, 5]
    loss, components, _ = padded_assignment_loss(prep, gt, assignment, int(targets.shape[0]), config, num_fg)
    return loss, components


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
