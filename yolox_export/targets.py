"""Target padding: the ragged [N, 6] target list to the padded [B, G, 5] layout the static module takes, and back.

Rows of ``targets`` are (image_index, class, cx, cy, w, h) in pixels. Padded rows are (class, cx, cy, w, h) with a
bool mask [B, G]; within an image, targets keep the order they have in ``targets``, so padded slot g of image b is
that image's g-th target, the index that ``Assignment.matched_gt`` reports.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .validation import check_targets


def per_image_slots(image_index: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """For each target, its position among its image's targets (order of appearance), and counts per image [B]."""
    onehot = image_index.unsqueeze(1) == torch.arange(batch_size, device=image_index.device)  # [N, B]
    slots = (onehot.cumsum(0) - 1).gather(1, image_index.unsqueeze(1)).squeeze(1)  # [N]
    return slots, onehot.sum(0)


def pad_targets(targets: Tensor, batch_size: int, max_gt: int | None = None, validate: bool = True) -> tuple[Tensor, Tensor]:
    """Pad [N, 6] targets to (gt [B, G, 5], gt_mask [B, G]).

    G is ``max_gt``, or the largest per-image count when None. An image with more than ``max_gt`` targets raises
    ValueError: targets are never silently truncated.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    if validate:
        check_targets(targets, batch_size)
    image_index = targets[:, 0].long()
    slots, counts = per_image_slots(image_index, batch_size)
    largest = int(counts.max()) if batch_size > 0 else 0
    if max_gt is None:
        max_gt = largest
    elif isinstance(max_gt, bool) or not isinstance(max_gt, int) or max_gt < 0:
        raise ValueError(f"max_gt must be an int >= 0 or None, got {max_gt!r}")
    elif largest > max_gt:
        image = int(torch.argmax(counts))
        raise ValueError(f"image {image} has {largest} targets, more than max_gt = {max_gt}")
    gt = targets.new_zeros((batch_size, max_gt, 5))
    gt_mask = torch.zeros((batch_size, max_gt), dtype=torch.bool, device=targets.device)
    gt[image_index, slots] = targets[:, 1:]
    gt_mask[image_index, slots] = True
    return gt, gt_mask


def unpad_targets(gt: Tensor, gt_mask: Tensor) -> Tensor:
    """Inverse of ``pad_targets``: [N, 6] rows grouped by image, in slot order within an image."""
    if gt.dim() != 3 or gt.shape[-1] != 5 or gt_mask.shape != gt.shape[:2]:
        raise ValueError(f"expected gt [B, G, 5] and gt_mask [B, G], got {tuple(gt.shape)} and {tuple(gt_mask.shape)}")
    image_index, slot = gt_mask.nonzero(as_tuple=True)
    rows = gt[image_index, slot]
    return torch.cat((image_index.unsqueeze(1).to(gt.dtype), rows), dim=1)


def with_min_slots(gt: Tensor, gt_mask: Tensor, min_slots: int = 1) -> tuple[Tensor, Tensor]:
    """(gt [B, G', 5], gt_mask [B, G']) with G' = max(G, ``min_slots``): masked zero slots appended where G is smaller.

    The static graph needs G >= 1 (one masked slot stands for "no targets"); masked slots never change the result.
    """
    missing = min_slots - gt.shape[1]
    if missing <= 0:
        return gt, gt_mask
    gt = torch.cat((gt, gt.new_zeros((gt.shape[0], missing, gt.shape[2]))), 1)
    return gt, torch.cat((gt_mask, gt_mask.new_zeros((gt_mask.shape[0], missing))), 1)
