"""Target padding: the ragged [N, 6] target list to the padded [B, G, 5] layout the static module takes, and back.

Rows of ``targets`` are (image_index, class, cx, cy, w, h) in pixels (or, in mmdet mode, x1, y1, x2, y2 for the
box: the columns are moved, never converted). Padded rows are (class, cx, cy, w, h) with a
bool mask [B, G]; within an image, targets keep the order they have in ``targets``, so padded slot g of image b is
that image's g-th target, the index that ``Assignment.matched_gt`` reports.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .box_format import CENTRE_SIZE, BoxFormat
from .config import check_flag
from .validation import check_targets


def per_image_slots(image_index: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """For each target, its position among its image's targets (order of appearance), and counts per image [B]."""
    onehot = image_index.unsqueeze(1) == torch.arange(batch_size, device=image_index.device)  # [N, B]
    slots = (onehot.cumsum(0) - 1).gather(1, image_index.unsqueeze(1)).squeeze(1)  # [N]
    return slots, onehot.sum(0)


def pad_targets(targets: Tensor, batch_size: int, max_gt: int | None = None, validate: bool = True,
                box_format: BoxFormat = CENTRE_SIZE) -> tuple[Tensor, Tensor]:
    """Pad [N, 6] targets to (gt [B, G, 5], gt_mask [B, G]); padding rows are zero with mask False. The box columns
    are passed through as they are; ``box_format`` (the mode's, ``LossConfig.box_format``) is what ``validate``
    checks them against.

    G is ``max_gt``, or the largest per-image count when None, and never less than 1: a batch without targets gets
    one masked slot per image (the static graph takes G >= 1). With ``max_gt`` fixed no value is read back to the
    host unless ``validate`` is set. An image with more than ``max_gt`` targets is never silently truncated: with
    ``validate`` it raises ValueError naming the image; without, its last slot becomes a real slot of NaN, which the
    graph never assigns and which makes the loss NaN. So does a row whose image index is not a whole number in
    [0, B) (``sorted_into_images``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    checked_max_gt(max_gt)
    if check_flag("validate", validate):
        check_targets(targets, batch_size, box_format=box_format)
    image_index, rows = sorted_into_images(targets, batch_size)
    slots, counts = per_image_slots(image_index, batch_size)
    if max_gt is None:
        max_gt = max(int(counts.max()) if batch_size > 0 else 0, 1)  # reads the counts back: a host sync
    elif validate:
        check_counts(counts, max_gt)
    return scatter_slots(rows, image_index, slots, counts, max_gt)


def checked_max_gt(max_gt):
    """``max_gt`` if it is an int >= 1 or None; ValueError otherwise."""
    if max_gt is not None and (isinstance(max_gt, bool) or not isinstance(max_gt, int) or max_gt < 1):
        raise ValueError(f"max_gt must be an int >= 1 or None, got {max_gt!r}")
    return max_gt


def sorted_into_images(targets: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """(image index int64 [N], rows [N, 5]) of targets [N, 6]. A row whose image index is not a whole number in
    [0, batch_size) (0.5, -1, NaN, B) is never truncated or dropped: it goes to image 0 as a row of NaN, a real
    slot that the graph never assigns and that makes the loss and its gradient NaN (the validating path raises
    first, naming the row). Element-wise only: no host synchronisation."""
    index = targets[:, 0]
    whole = (index == torch.floor(index)) & (index >= 0) & (index < batch_size)  # [N]; NaN fails
    image_index = torch.where(whole, index, torch.zeros_like(index)).long()
    rows = torch.where(whole.unsqueeze(1), targets[:, 1:], torch.full_like(targets[:, 1:], float("nan")))
    return image_index, rows


def scatter_slots(rows: Tensor, image_index: Tensor, slots: Tensor, counts: Tensor, max_gt: int) -> tuple[Tensor, Tensor]:
    """(gt [B, G, 5], gt_mask [B, G]) from rows [N, 5] at (image_index, slot) [N], G = max_gt, without a host sync.

    Rows beyond G go to one spare row that is then dropped; an overflowing image's last slot (counts [B] > G) is
    made a real slot of NaN instead, so the overflow shows in the loss rather than vanishing."""
    batch = counts.shape[0]
    spare = batch * max_gt
    flat_index = torch.where(slots < max_gt, image_index * max_gt + slots, spare)  # [N]
    gt = rows.new_zeros((spare + 1, 5))
    gt_mask = torch.zeros(spare + 1, dtype=torch.bool, device=rows.device)
    gt[flat_index] = rows
    gt_mask[flat_index] = True
    gt, gt_mask = gt[:spare].view(batch, max_gt, 5), gt_mask[:spare].view(batch, max_gt)
    overflow = counts > max_gt  # [B]
    gt[:, -1] = torch.where(overflow.unsqueeze(-1), torch.full_like(gt[:, -1], float("nan")), gt[:, -1])
    gt_mask[:, -1] |= overflow
    return gt, gt_mask


def check_counts(counts: Tensor, max_gt: int) -> None:
    """ValueError naming the first image whose target count (counts [B]) exceeds max_gt; reads the counts back."""
    over = counts > max_gt
    if bool(over.any()):
        image = int(over.nonzero()[0])
        raise ValueError(f"image {image} has {int(counts[image])} targets, more than max_gt = {max_gt}")


def check_target_counts(targets: Tensor, batch_size: int, max_gt: int) -> None:
    """``check_counts`` for [N, 6] targets whose image indices are already known to be valid."""
    check_counts(per_image_slots(targets[:, 0].long(), batch_size)[1], max_gt)


def unpad_targets(gt: Tensor, gt_mask: Tensor) -> Tensor:
    """Inverse of ``pad_targets``: [N, 6] rows grouped by image, in slot order within an image."""
    if gt.dim() != 3 or gt.shape[-1] != 5 or gt_mask.shape != gt.shape[:2]:
        raise ValueError(f"expected gt [B, G, 5] and gt_mask [B, G], got {tuple(gt.shape)} and {tuple(gt_mask.shape)}")
    image_index, slot = gt_mask.nonzero(as_tuple=True)
    rows = gt[image_index, slot]
    return torch.cat((image_index.unsqueeze(1).to(gt.dtype), rows), dim=1)
