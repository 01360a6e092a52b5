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
from ..targets import pad_targets, per_image_slots
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

    def loss_assignment_and_audit(self, model_output, targets: Tensor):
        """``loss_and_assignment``'s (loss, components, assignment) and ``audit``'s result, from one assignment."""
        prep, targets = prepare(model_output, targets, self.config, self.validate, self._misreadings)
        record = AuditRecord(int(targets.shape[0]), prep.raw.device)
        with torch.no_grad():
            assignment = self._assign(prep, targets, record)
        loss, components = assignment_loss(prep, targets, assignment, self.config, num_fg=self._num_fg(assignment, prep))
        return loss, components, assignment, record.audit(targets, int(prep.raw.shape[0]), self.config)

    @torch.no_grad()
    def assign(self, model_output, targets: Tensor) -> Assignment:
        prep, targets = prepare(model_output, targets, self.config, self.validate, self._misreadings)
        return self._assign(prep, targets)

    @torch.no_grad()
    def audit(self, model_output, targets: Tensor):
        """The per-target audit (``audit.TargetAudit``; row i describes targets[i]) from this reference's own
        computation: the k it passes to each target's selection, its selection before the contest and its final
        assignment. A target for which it ranks nothing (an image without candidate cells; fast mode: a target
        without a candidate) has k = 0 and status "no candidates"."""
        prep, targets = prepare(model_output, targets, self.config, self.validate, self._misreadings)
        record = AuditRecord(int(targets.shape[0]), prep.raw.device)
        self._assign(prep, targets, record)
        return record.audit(targets, int(prep.raw.shape[0]), self.config)

    def _assign(self, prep: Prepared, targets: Tensor, record: AuditRecord | None = None) -> Assignment:
        """The assignment; with ``record``, also fill it (``AuditRecord``) from the same computation."""
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


class AuditRecord:
    """A reference's per-target audit, int64 [N] per input target row (``cheapest`` float32 [N], inf without an
    own candidate), filled image by image (``note``) as the reference assigns."""

    def __init__(self, num_targets: int, device) -> None:
        zeros = lambda: torch.zeros(num_targets, dtype=torch.long, device=device)  # noqa: E731
        self.k, self.selected, self.cells, self.won, self.candidates = (zeros() for _ in range(5))
        self.cheapest = torch.full((num_targets,), float("inf"), device=device)

    def note(self, rows: Tensor, ks, selected: Tensor, final: Tensor, own: Tensor, cost: Tensor) -> None:
        """One image's targets (their input rows [n]) after a union-mode matching: ``ks`` the k passed to each
        target's top-k [n]; ``selected`` and ``final`` bool [n, m], the matching before and after the contest;
        ``own`` bool [n, m], each target's own candidates among the m ranked cells; ``cost`` [n, m]."""
        self.k[rows] = torch.as_tensor(ks, device=rows.device).long()
        self.selected[rows] = selected.sum(1).long()
        self.cells[rows] = final.sum(1).long()
        self.won[rows] = (final & ~selected).sum(1).long()
        self.candidates[rows] = own.sum(1).long()
        self.cheapest[rows] = cost.float().masked_fill(~own, float("inf")).amin(1)

    def audit(self, targets: Tensor, batch: int, config: LossConfig):
        """The ``audit.TargetAudit`` of targets [N, 6] (valid rows: a reference validates or trusts its input)."""
        from ..audit.result import TargetAudit, status_of

        real = torch.ones(self.k.shape, dtype=torch.bool, device=self.k.device)
        slot, _ = per_image_slots(targets[:, 0].long(), batch)
        return TargetAudit(image=targets[:, 0].long(), slot=slot, label=targets[:, 1].long(),
                           box=targets[:, 2:6].detach().float(), k=self.k, selected=self.selected,
                           lost=self.selected - self.cells + self.won, won=self.won, cells=self.cells,
                           candidates=self.candidates, cheapest=self.cheapest, status=status_of(real, real, self.k),
                           mode=config.mode, box_format=config.box_format.name)
