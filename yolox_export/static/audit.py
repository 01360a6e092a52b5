"""The static assignment's per-target audit over padded slots: what each target asked for, selected, lost, won and
kept (``select.TargetCounts``, counted by the contest itself), and, to explain those numbers, its own candidate
cells under the mode's rule and its cheapest cost over them.

Shape legend: B batch, A cells, G padded targets, Gc the targets of one chunk, C classes. Boxes in pixels, in the
mode's box format. Eager only (it reads nothing back to the host, but it is not part of the exported graph, whose
``target_k`` / ``target_cells`` come from the same ``Contest``).

Own candidates: the cells the target's own test passes (box or centre region; megvii: the centre region), usable
cells only (a cell with a non-finite output is never a candidate). In the union modes (regular, megvii, mmdet) a
target is ranked over the whole image's union, so it may select, and win, cells outside its own candidates; the
fast mode ranks its own candidates only. The cheapest cost is the assignment's cost (class + 3 * IoU term + the
mode's penalty outside box-and-centre) over the own candidates, inf without any.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import IOU_COST_WEIGHT, LossConfig
from ..grid import Grid
from .assign import near_cells
from .chunks import UNCHUNKED, Chunking, target_spans, targets_of
from .cost import class_cost, class_cost_parts, pairwise_iou
from .masks import count_true
from .padded import nonfinite_marks, padded_assign
from .sanitise import sanitise_slots
from .select import TargetCounts


@dataclass
class SlotAudit:
    """The audit of every padded slot, each [B, G]: ``counts`` (``TargetCounts``: k, selected, cells, won, lost),
    ``candidates`` int64 (own candidate cells), ``cheapest`` float32 (cheapest cost over them, inf without any),
    ``real`` bool (the slot's mask as given) and ``well_formed`` bool (real and kept by ``sanitise``)."""

    counts: TargetCounts
    candidates: Tensor
    cheapest: Tensor
    real: Tensor
    well_formed: Tensor


def slot_audit(raw: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid, config: LossConfig, boxes: Tensor | None = None,
               chunking: Chunking = UNCHUNKED) -> SlotAudit:
    """The audit of raw predictions [B, A, 5 + C] and padded targets gt [B, G, 5] / gt_mask [B, G] (``boxes``: the
    decoded boxes [B, A, 4] to use instead of decoding ``raw``, as Megvii's head hands them over). The assignment is
    ``padded_assign``'s, chunked (``chunking``) like the loss; the counts do not depend on the chunking."""
    with torch.no_grad(), torch.autocast(device_type=raw.device.type, enabled=False):
        raw = raw.detach().float()
        assignment = padded_assign(raw, gt, gt_mask, grid, config, boxes=boxes, chunking=chunking, audit=True)
        slots = sanitise_slots(gt.float(), gt_mask, config.num_classes, config.box_format)
        boxes = config.box_format.decode(raw[..., :4], grid) if boxes is None else boxes.detach().float()
        usable = (nonfinite_marks(raw) == 0) & torch.isfinite(boxes).all(-1)  # [B, A]
        per_chunk = chunking.per_chunk(raw.shape[0], raw.shape[1])
        candidates, cheapest = own_candidates(raw, boxes, usable, slots.gt, slots.mask, grid, config, per_chunk)
        return SlotAudit(assignment.counts, candidates, cheapest, gt_mask.clone(), slots.mask)


def own_candidates(raw: Tensor, boxes: Tensor, usable: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid,
                   config: LossConfig, per_chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """(count int64 [B, G], cheapest cost float32 [B, G]) over each real target's own candidate cells, the cost
    written as the dense assignment writes it (``assign.chunk_selection``); ``per_chunk`` targets at a time."""
    parts = class_cost_parts(raw[..., 5:], raw[..., 4])
    counts, cheapest = [], []
    for span in target_spans(gt.shape[1], per_chunk):
        chunk, mask = targets_of(gt, span), targets_of(gt_mask, span)
        near, strong = near_cells(chunk, mask, usable, grid, config)  # [B, Gc, A]
        ious = pairwise_iou(chunk[..., 1:5], boxes, config)
        cost = class_cost(parts, chunk[..., 0].long())
        cost += torch.log(ious + config.iou_cost_eps).neg_().mul_(IOU_COST_WEIGHT)
        cost += (~strong).to(cost.dtype).mul_(config.outside_cost)
        counts.append(count_true(near, -1).long())
        cheapest.append(cost.masked_fill_(~near, float("inf")).amin(-1))
    return torch.cat(counts, 1), torch.cat(cheapest, 1)
