"""The static audit of an input, row by row: the padded slots' audit (``static.audit.slot_audit``, [B, G]) mapped
back to the rows of the input, [N, 6] targets or every padded slot, with each row's status.

Shape legend: N input rows, B batch, G padded targets, A cells, C classes. Rows of [N, 6] targets are (image_index,
class, then the box in the mode's format) in pixels; a row's slot is its position among its image's rows
(``targets.per_image_slots``), as ``pad_targets`` lays them out.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..config import LossConfig
from ..grid import flatten_levels, level_shapes, make_grid
from ..static.audit import SlotAudit, slot_audit
from ..static.chunks import Chunking
from ..targets import pad_targets, per_image_slots
from ..validation import check_predictions, check_targets
from .result import TargetAudit, status_of


def static_audit(predictions: Sequence[Tensor], targets: Tensor, config: LossConfig, max_gt: int | None = None,
                 chunking: Chunking = Chunking(), validate: bool = True) -> TargetAudit:
    """The static assignment's audit of per-level predictions [B, 1, H, W, 5 + C] and [N, 6] targets: row i
    describes targets[i]. ``validate`` checks the inputs as the loss does (raising on a malformed row); an image
    with more than ``max_gt`` targets is reported ("over capacity"), never raised on."""
    if validate:
        check_predictions(predictions, config.strides, config.num_classes)
        check_targets(targets, int(predictions[0].shape[0]), config.num_classes, device=predictions[0].device,
                      box_format=config.box_format)
    batch = int(predictions[0].shape[0])
    raw = flatten_levels(list(predictions))
    gt, gt_mask = pad_targets(targets, batch, max_gt, validate=False)
    grid = make_grid(level_shapes(predictions), config.strides, device=raw.device)
    slots = slot_audit(raw, gt, gt_mask, grid, config, chunking=chunking)
    return rows_of_targets(slots, targets, batch, config)


def rows_of_targets(slots: SlotAudit, targets: Tensor, batch: int, config: LossConfig) -> TargetAudit:
    """``slots`` [B, G] mapped to the rows of ``targets`` [N, 6]. A row whose image index is not a whole number in
    [0, B) is malformed (image -1); in an image with more than G rows, the rows at slot G - 1 and beyond are over
    capacity (``pad_targets`` gives slot G - 1 up to mark the overflow) and have no slot (-1)."""
    targets = targets.detach()
    index = targets[:, 0]
    whole = (index == torch.floor(index)) & (index >= 0) & (index < batch)  # [N]; NaN fails
    image = torch.where(whole, index, torch.zeros_like(index)).long()
    slot, per_image = per_image_slots(image, batch)
    width = slots.real.shape[1]
    over = (slot >= width) | ((per_image > width)[image] & (slot == width - 1))  # [N]
    present = ~over
    at = slot.clamp(max=width - 1)

    def take(values: Tensor, fill) -> Tensor:
        return torch.where(present, values[image, at], torch.full_like(values[image, at], fill))

    counts = slots.counts
    k = take(counts.k, 0)
    status = status_of(torch.ones_like(whole), whole & take(slots.well_formed, False), k, over & whole)
    return TargetAudit(image=torch.where(whole, image, -1), slot=torch.where(present, slot, -1),
                       label=torch.nan_to_num(targets[:, 1], nan=-1.0, posinf=-1.0, neginf=-1.0).long(),
                       box=targets[:, 2:6].float(), k=k, selected=take(counts.selected, 0), lost=take(counts.lost, 0),
                       won=take(counts.won, 0), cells=take(counts.cells, 0), candidates=take(slots.candidates, 0),
                       cheapest=take(slots.cheapest, float("inf")), status=status, mode=config.mode,
                       box_format=config.box_format.name)


def rows_of_slots(slots: SlotAudit, gt: Tensor, config: LossConfig) -> TargetAudit:
    """``slots`` [B, G] as B * G rows, image-major (row b * G + g is slot g of image b), padding slots "masked"."""
    batch, width = slots.real.shape
    image = torch.arange(batch, device=gt.device).repeat_interleave(width)
    slot = torch.arange(width, device=gt.device).repeat(batch)
    counts = slots.counts
    flat = lambda t: t.reshape(-1)  # noqa: E731
    k = flat(counts.k)
    status = status_of(flat(slots.real), flat(slots.well_formed), k)
    gt = gt.detach().reshape(-1, 5)
    return TargetAudit(image=image, slot=slot, label=torch.nan_to_num(gt[:, 0], nan=-1.0, posinf=-1.0,
                                                                      neginf=-1.0).long(),
                       box=gt[:, 1:5].float(), k=k, selected=flat(counts.selected), lost=flat(counts.lost),
                       won=flat(counts.won), cells=flat(counts.cells), candidates=flat(slots.candidates),
                       cheapest=flat(slots.cheapest), status=status, mode=config.mode,
                       box_format=config.box_format.name)
