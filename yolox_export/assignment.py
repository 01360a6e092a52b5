"""The label assignment's result, the same for every implementation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass
class Assignment:
    """SimOTA's answer for a batch. A is all cells of all levels, levels in stride order, each row-major.

    fg_mask: bool [B, A], cells matched to a target.
    matched_gt: int64 [B, A], index of the matched target among its image's targets, in the order they appear in
        ``targets`` (= padded slot); -1 for background.
    matched_iou: float [B, A], IoU of the cell's predicted box with its target; 0 for background.
    counts: the per-target audit (``static.select.TargetCounts``, each [B, G]) when the static assignment was asked
        for it (``audit=True``); None otherwise.
    """

    fg_mask: Tensor
    matched_gt: Tensor
    matched_iou: Tensor
    counts: Any = None
