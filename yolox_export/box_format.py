"""Box formats: what a target row's four box columns mean, and everything that follows from it.

A mode's targets and decoded boxes are in one format from end to end (``config.ModeRules.box_format``): the
super-gradients and Megvii modes use (cx, cy, w, h), mmdetection's uses (x1, y1, x2, y2). Targets are never
converted between the two, since that does not round-trip in float32. Each format says how to read a box's centre
and corners (for the candidate tests), how to decode the head's box logits, the IoU loss and the L1 target, and what
a well-formed box is. All boxes are in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from .boxes import iou_loss, l1_target, mmdet_iou_loss, mmdet_l1_target
from .grid import Grid, decode_boxes, decode_corners


def _centre_size_centre(box: Tensor) -> tuple[Tensor, Tensor]:
    return box[..., 0], box[..., 1]


def _centre_size_corners(box: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    cx, cy = box[..., 0], box[..., 1]
    half_w, half_h = 0.5 * box[..., 2], 0.5 * box[..., 3]
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _centre_size_extent(box: Tensor) -> tuple[Tensor, Tensor]:
    return box[..., 2], box[..., 3]


def _corners_centre(box: Tensor) -> tuple[Tensor, Tensor]:
    return (box[..., 0] + box[..., 2]) / 2.0, (box[..., 1] + box[..., 3]) / 2.0


def _corners_corners(box: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return box[..., 0], box[..., 1], box[..., 2], box[..., 3]


def _corners_extent(box: Tensor) -> tuple[Tensor, Tensor]:
    return box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]


@dataclass(frozen=True)
class BoxFormat:
    """One box format. ``columns`` name the four box columns of a target row. ``centre(box)`` and ``corners(box)``
    read [..., 4] boxes as each reference does (the corners of (cx, cy, w, h) are cx -/+ 0.5 * w, its centre test's
    centre is (cx, cy); the centre of corners is ((x1 + x2) / 2, (y1 + y2) / 2)). ``decode(logits, grid)`` turns
    box logits [B, A, >=4] into boxes of this format; ``iou_loss(pred, target, iou_type)`` and ``l1_target(gt,
    stride, x_shift, y_shift)`` are the loss's two box terms. ``extent(box)`` is (width, height); a well-formed box
    has both > 0, or >= 0 when ``allows_empty`` (mmdetection computes a zero-width box without complaint)."""

    name: str
    columns: tuple[str, str, str, str]
    centre: Callable[[Tensor], tuple[Tensor, Tensor]]
    corners: Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]
    extent: Callable[[Tensor], tuple[Tensor, Tensor]]
    allows_empty: bool
    decode: Callable[[Tensor, Grid], Tensor]
    iou_loss: Callable[..., Tensor]
    l1_target: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

    @property
    def row(self) -> str:
        """A target row's layout in words, e.g. "class, cx, cy, w, h"."""
        return ", ".join(("class",) + self.columns)

    def extent_ok(self, box: Tensor) -> Tensor:
        """bool [...]: the box's width and height are > 0 (>= 0 when ``allows_empty``); False for NaN."""
        width, height = self.extent(box)
        if self.allows_empty:
            return (width >= 0) & (height >= 0)
        return (width > 0) & (height > 0)

    def extent_error(self, box: list[float]) -> str:
        """What is wrong with one box (four numbers) that fails ``extent_ok``, for an error message."""
        if self.allows_empty:
            return f"x1, y1, x2, y2 = {', '.join(map(str, box))}; a box needs x2 >= x1 and y2 >= y1"
        return f"w, h = {box[2]}, {box[3]}; both must be > 0"


CENTRE_SIZE = BoxFormat("cxcywh", ("cx", "cy", "w", "h"), _centre_size_centre, _centre_size_corners,
                        _centre_size_extent, False, decode_boxes, iou_loss, l1_target)
CORNERS = BoxFormat("xyxy", ("x1", "y1", "x2", "y2"), _corners_centre, _corners_corners, _corners_extent, True,
                    decode_corners, mmdet_iou_loss, mmdet_l1_target)

#: name -> format; ``config.ModeRules.box_format`` names one.
BOX_FORMATS = {f.name: f for f in (CENTRE_SIZE, CORNERS)}
