"""Drop-in for Megvii YOLOX's ``YOLOXHead.get_losses``: the static megvii-mode loss behind Megvii's own calling
convention, without importing Megvii's package.

Megvii's head decodes its outputs itself and calls ``get_losses(imgs, x_shifts, y_shifts, expanded_strides, labels,
outputs, origin_preds, dtype)`` with

* ``outputs`` [B, A, 5 + C]: decoded boxes (cx, cy, w, h) in pixels, whose gradient flows back through the user's
  decode, then the raw objectness and class logits; levels in stride order, row-major;
* ``x_shifts``, ``y_shifts``, ``expanded_strides``: per level [1, h * w] cell columns, rows and strides;
* ``labels`` [B, max_labels, 5] rows (class, cx, cy, w, h) in pixels, real rows first, padding rows all zero;
* ``origin_preds``: per level [B, h * w, 4] raw box logits (used only with L1, when the head's ``use_l1`` is on).

``MegviiLoss.get_losses`` returns Megvii's tuple ``(loss, 5 * iou_loss, obj_loss, cls_loss, l1_loss,
num_fg / num_gts)``: ``loss`` carries the gradient; the four terms are detached float32 tensors (``l1_loss`` is the
float 0.0 without L1, as in Megvii) and the last is a Python float. The decoded boxes are used as given (never
re-derived from logits), so the assignment sees exactly Megvii's boxes; the loss runs in float32 whatever ``dtype``.

Differences from Megvii, on purpose: labels whose real rows are not first, or an all-zero row among real rows, raise
ValueError (Megvii counts rows with ``sum > 0`` and silently drops or misreads them); a real row is any row that is not
all zero (Megvii would also drop a real row whose values sum to <= 0); class ids, coordinates and sizes are checked
like every other entry point, and so are the outputs: a non-finite decoded box, objectness or class output raises
ValueError naming the image and cell (Megvii returns a NaN or a plausible loss); an image whose targets have no
centre cell gets no assignment (Megvii raises).

``validate=False`` skips those checks (for a mixed-precision user who prefers GradScaler's skipped step to an error):
then a non-finite output or malformed label makes the loss and every gradient element NaN. ``validate`` never changes
the arithmetic: the loss is the static graph's matched-cell form either way (the labels come padded, so G is fixed
by their shape), equal to ``MegviiYoloXLoss`` to float32 rounding.

A Megvii user changes two lines::

    from yolox_export.integrations.megvii import bind_to_head
    bind_to_head(model.head)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor, nn

from ..config import REG_WEIGHT, LossConfig, check_flag
from ..grid import Grid, make_grid
from ..static import padded_loss
from ..static.chunks import DEFAULT_MAX_MEMORY_MIB, Chunking
from ..validation import check_rows, first_nonfinite


class MegviiLoss(nn.Module):
    """Megvii YOLOX's head loss, static and windowed (``StaticYoloXLoss(mode="megvii")``), with Megvii's
    ``get_losses`` signature. ``use_l1`` may be switched at any time (Megvii's trainer turns it on for the last
    epochs); ``bind_to_head`` follows the head's own ``use_l1``."""

    def __init__(self, num_classes: int, strides: Sequence[int] = (8, 16, 32), use_l1: bool = False,
                 validate: bool = True, max_memory_mib: float | None = DEFAULT_MAX_MEMORY_MIB):
        super().__init__()
        self.config = LossConfig(tuple(int(s) for s in strides), num_classes, mode="megvii",
                                 use_l1=check_flag("use_l1", use_l1))
        self.use_l1 = use_l1
        self.validate = check_flag("validate", validate)
        self.chunking = Chunking(max_memory_mib)
        self._grids: dict[tuple, Grid] = {}

    def get_losses(self, imgs, x_shifts: Sequence[Tensor], y_shifts: Sequence[Tensor],
                   expanded_strides: Sequence[Tensor], labels: Tensor, outputs: Tensor, origin_preds, dtype=None):
        """Megvii's ``YOLOXHead.get_losses``; see the module docstring. ``imgs`` and ``dtype`` are accepted for the
        signature and not needed."""
        config = dataclasses.replace(self.config, use_l1=check_flag("use_l1", self.use_l1))
        check_outputs(outputs, labels, config)
        if self.validate:
            check_finite_outputs(outputs)
        grid = self.grid(x_shifts, y_shifts, expanded_strides, outputs)
        gt, gt_mask = labels_to_padded(labels, config.num_classes, self.validate)
        if config.use_l1:
            box_logits = torch.cat(list(origin_preds), 1)
            if tuple(box_logits.shape) != (*outputs.shape[:2], 4):
                raise ValueError(f"origin_preds concatenate to {tuple(box_logits.shape)}; expected "
                                 f"{(*outputs.shape[:2], 4)} raw box logits")
        else:
            box_logits = outputs.new_zeros((*outputs.shape[:2], 4))  # unused without L1
        raw = torch.cat((box_logits, outputs[..., 4:]), -1)  # [B, A, 5 + C]
        out = padded_loss(raw, gt, gt_mask, grid, config, boxes=outputs[..., :4], chunking=self.chunking)
        iou, obj, cls, l1, fg_ratio, _ = out.components
        return out.loss, REG_WEIGHT * iou, obj, cls, (l1 if config.use_l1 else 0.0), float(fg_ratio)

    def audit(self, imgs, x_shifts: Sequence[Tensor], y_shifts: Sequence[Tensor], expanded_strides: Sequence[Tensor],
              labels: Tensor, outputs: Tensor, origin_preds=None, dtype=None):
        """The per-target audit (``audit.TargetAudit``, docs/audit.md) of ``get_losses``'s inputs (the same
        arguments; ``origin_preds`` unused): row b * G + g describes ``labels[b, g]``, G the batch's largest real
        row count (the padding rows beyond it are not reported; within it they are "masked" rows)."""
        from ..audit import rows_of_slots
        from ..static.audit import slot_audit

        check_outputs(outputs, labels, self.config)
        if self.validate:
            check_finite_outputs(outputs)
        grid = self.grid(x_shifts, y_shifts, expanded_strides, outputs)
        gt, gt_mask = labels_to_padded(labels, self.config.num_classes, self.validate)
        raw = torch.cat((outputs.new_zeros((*outputs.shape[:2], 4)), outputs[..., 4:]), -1)  # box logits unused
        slots = slot_audit(raw, gt, gt_mask, grid, self.config, boxes=outputs[..., :4], chunking=self.chunking)
        return rows_of_slots(slots, gt, self.config)

    def grid(self, x_shifts, y_shifts, expanded_strides, outputs: Tensor) -> Grid:
        """The cell grid the head's shifts describe, checked once per set of level sizes against ours."""
        sizes = tuple(int(x.shape[-1]) for x in x_shifts)
        key = (sizes, outputs.device)
        if key not in self._grids:
            self._grids[key] = checked_grid(x_shifts, y_shifts, expanded_strides, self.config.strides, outputs)
        return self._grids[key]


def checked_grid(x_shifts, y_shifts, expanded_strides, strides: Sequence[int], outputs: Tensor) -> Grid:
    """Level shapes from the per-level shifts [1, h * w]; ValueError unless they are the row-major grid of
    ``strides`` with as many cells as ``outputs`` [B, A, ...]."""
    if not (len(x_shifts) == len(y_shifts) == len(expanded_strides) == len(strides)):
        raise ValueError(f"got {len(x_shifts)} x_shifts, {len(y_shifts)} y_shifts, {len(expanded_strides)} "
                         f"expanded_strides for {len(strides)} strides {tuple(strides)}")
    shapes = []
    for level, x in enumerate(x_shifts):
        cells = int(x.shape[-1])
        width = int(x.detach().max()) + 1 if cells else 0
        if width < 1 or cells % width:
            raise ValueError(f"x_shifts of level {level} do not describe a row-major grid ({cells} cells)")
        shapes.append((cells // width, width))
    grid = make_grid(shapes, strides, device=outputs.device)
    given = [torch.cat([t.reshape(-1).to(grid.strides.device, torch.float32) for t in ts])
             for ts in (x_shifts, y_shifts, expanded_strides)]
    if given[0].shape[0] != outputs.shape[1]:
        raise ValueError(f"the shifts cover {given[0].shape[0]} cells but outputs has {outputs.shape[1]}")
    for name, mine, theirs in zip(("x_shifts", "y_shifts", "expanded_strides"), (grid.x_shifts, grid.y_shifts,
                                                                              grid.strides), given):
        if not torch.equal(mine, theirs):
            raise ValueError(f"{name} differ from the row-major grid of levels {shapes} at strides {tuple(strides)}")
    return grid


def check_outputs(outputs: Tensor, labels: Tensor, config: LossConfig) -> None:
    if not isinstance(outputs, Tensor) or outputs.dim() != 3 or outputs.shape[-1] != 5 + config.num_classes:
        raise ValueError(f"outputs must be [B, A, {5 + config.num_classes}], got "
                         f"{tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__}")
    if not outputs.is_floating_point():
        raise TypeError(f"outputs must be floating point, got {outputs.dtype}")
    if not isinstance(labels, Tensor) or labels.dim() != 3 or labels.shape[-1] != 5 or labels.shape[0] != outputs.shape[0]:
        raise ValueError(f"labels must be [{outputs.shape[0]}, max_labels, 5] rows (class, cx, cy, w, h), got "
                         f"{tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__}")


def check_finite_outputs(outputs: Tensor) -> None:
    """ValueError naming the first image and cell of outputs [B, A, 5 + C] with a non-finite decoded box,
    objectness or class output (one read-only pass when all is finite)."""
    index = first_nonfinite(outputs)
    if index is None:
        return
    image, cell, column = index
    part = "decoded box" if column < 4 else ("objectness" if column == 4 else f"class {column - 5}")
    raise ValueError(f"outputs of image {image}, cell {cell}: non-finite {part} output {outputs[index].item()}"
                     " (validate=False skips this check; the loss and its gradient are then NaN)")


def labels_to_padded(labels: Tensor, num_classes: int, validate: bool = True) -> tuple[Tensor, Tensor]:
    """Megvii's zero-padded labels [B, L, 5] to (gt [B, G, 5], gt_mask [B, G]), G = max(the largest real count, 1).

    A real row is one that is not all zero; real rows must come first in each image (ValueError otherwise, naming
    the image and row). With ``validate``, the real rows are checked like every entry point's targets. The check
    reads the rows back anyway, so the padding rows beyond the batch's largest real count are dropped (Megvii's
    loader pads to 120 rows; the assignment never depends on padding): the call pays for the real rows only.
    """
    real = (labels != 0).any(-1)  # [B, L]
    late = real[:, 1:] & ~real[:, :-1]  # a real row right after a padding row
    if bool(late.any()):
        image, row = (int(i) for i in late.nonzero()[0])
        raise ValueError(f"labels of image {image}: row {row + 1} is a real target after the all-zero row {row}; "
                         "real rows must come first and padding rows be all zero (Megvii's count would miss it)")
    if validate and bool(real.any()):
        image, row = real.detach().cpu().nonzero(as_tuple=True)
        check_rows(labels.detach().cpu()[image, row].double(), lambda i: f"labels[{int(image[i])}, {int(row[i])}] (image {int(image[i])}, row {int(row[i])})",
                   num_classes)
    count = max(int(real.sum(1).max()) if real.numel() else 0, 1)  # G >= 1: one masked slot for "no targets"
    gt, mask = labels.float()[:, :count], real[:, :count]
    if gt.shape[1] < count:  # no label rows at all
        gt, mask = gt.new_zeros((gt.shape[0], count, 5)), mask.new_zeros((mask.shape[0], count))
    return gt, mask


def bind_to_head(head, loss: MegviiLoss | None = None):
    """Replace ``head.get_losses`` (duck-typed: anything with Megvii's call) by ``loss``'s; returns the head.

    ``loss`` defaults to ``MegviiLoss(head.num_classes, head.strides)``. At each call the loss follows the head's
    ``use_l1`` when it has one. ValueError when ``loss`` disagrees with the head's ``num_classes`` or ``strides``.
    """
    if loss is None:
        loss = MegviiLoss(head.num_classes, tuple(head.strides), use_l1=getattr(head, "use_l1", False))
    if hasattr(head, "num_classes") and int(head.num_classes) != loss.config.num_classes:
        raise ValueError(f"head has num_classes = {head.num_classes}, the loss {loss.config.num_classes}")
    if hasattr(head, "strides") and tuple(int(s) for s in head.strides) != loss.config.strides:
        raise ValueError(f"head has strides {tuple(head.strides)}, the loss {loss.config.strides}")

    def get_losses(*args, **kwargs):
        if hasattr(head, "use_l1"):
            loss.use_l1 = head.use_l1
        return loss.get_losses(*args, **kwargs)

    head.get_losses = get_losses
    return head
