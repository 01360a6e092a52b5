"""Input checks for the public entry points. They run eagerly, outside any traced graph, and raise errors that
name what is wrong; nothing is dropped, truncated or guessed. Targets that are valid but look misread (normalised
coordinates, corner boxes) get a ``TargetWarning``, once per module instance.

Shape legend: B batch, A cells, G padded target slots, C classes; boxes in pixels, (cx, cy, w, h) or, in mmdet mode,
(x1, y1, x2, y2) (``box_format``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor

from .box_format import CENTRE_SIZE, CORNERS, BoxFormat

if TYPE_CHECKING:
    from .config import LossConfig

FLOAT_HINT = "convert them with `.float()`"


# ---------------------------------------------------------------------------------------------------------------
# numbers and tensors


def is_finite_number(value) -> bool:
    """A real Python number (not a bool) that is finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value) -> float:
    """``value`` as a float if it is a finite number > 0; ValueError naming ``name`` otherwise."""
    if not (is_finite_number(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def first_nonfinite(values: Tensor) -> tuple[int, ...] | None:
    """The index of the first non-finite element of ``values`` (row-major), or None when every element is finite:
    one read-only reduction when all is finite (a NaN or inf anywhere makes the sum non-finite); a meta tensor has
    no values and passes."""
    values = values.detach()
    if values.device.type == "meta" or bool(torch.isfinite(values.sum())):
        return None
    bad = ~torch.isfinite(values)  # the sum overflowed, or something is non-finite: find it
    if not bool(bad.any()):
        return None
    return tuple(int(i) for i in bad.nonzero()[0])


def unwrap_model_output(model_output) -> list[Tensor]:
    """The per-level list from a head's output: the list itself, or the second item of an (eval, raw) tuple."""
    if isinstance(model_output, tuple) and len(model_output) == 2:
        model_output = model_output[1]
    if isinstance(model_output, Tensor) or not isinstance(model_output, (list, tuple)):
        raise TypeError(
            "model_output must be a list of per-level tensors [B, 1, H, W, 5 + C] or a tuple whose second item is "
            f"that list, got {type(model_output).__name__}"
        )
    return list(model_output)


def check_predictions(predictions: Sequence[Tensor], strides: Sequence[int], num_classes: int) -> None:
    """Levels: one per stride, each [B, 1, H, W, 5 + C], floating point, finite, one image size for all levels."""
    if len(predictions) != len(strides):
        raise ValueError(f"got {len(predictions)} prediction levels for {len(strides)} strides {tuple(strides)}")
    batch = None
    for level, p in enumerate(predictions):
        if not isinstance(p, Tensor):
            raise TypeError(f"prediction level {level} is a {type(p).__name__}, not a tensor")
        if not p.is_floating_point():
            raise TypeError(f"prediction level {level} has dtype {p.dtype}; a floating dtype is required")
        if p.dim() != 5 or p.shape[1] != 1:
            raise ValueError(f"prediction level {level} has shape {tuple(p.shape)}; expected [B, 1, H, W, 5 + C]")
        if p.shape[-1] != 5 + num_classes:
            raise ValueError(
                f"prediction level {level} has last dimension {p.shape[-1]}; expected 5 + num_classes = {5 + num_classes}"
            )
        if batch is None:
            batch = p.shape[0]
        elif p.shape[0] != batch:
            raise ValueError(f"prediction level {level} has batch {p.shape[0]}; level 0 has {batch}")
        if p.device != predictions[0].device:
            raise ValueError(f"prediction level {level} is on {p.device}; level 0 is on {predictions[0].device}")
    check_grids([(int(p.shape[2]), int(p.shape[3])) for p in predictions], strides, "prediction level")
    for level, p in enumerate(predictions):
        index = first_nonfinite(p)
        if index is not None:
            raise ValueError(f"prediction level {level} has a non-finite value {p[index].item()} at index {index}")


def check_grids(grids: Sequence[tuple[int, int]], strides: Sequence[int], what: str) -> None:
    """Levels' (H, W), one per stride, must cover one image size; a wrong level order is named as such."""
    sizes = [(h * s, w * s) for (h, w), s in zip(grids, strides)]
    for level, (grid, stride, size) in enumerate(zip(grids, strides, sizes)):
        if size != sizes[0]:
            raise ValueError(
                f"{what} {level} grid {tuple(grid)} at stride {stride} covers an image of {size[0]}x{size[1]}; "
                f"level 0 covers {sizes[0][0]}x{sizes[0][1]}{_order_hint(grids, strides)}"
            )


def _order_hint(grids: Sequence[tuple[int, int]], strides: Sequence[int]) -> str:
    """When the grids do cover one image with the strides matched up by size (largest grid, smallest stride), the
    levels are just in the wrong order: say so."""
    by_size = sorted(range(len(grids)), key=lambda i: -grids[i][0] * grids[i][1])
    by_stride = sorted(range(len(strides)), key=lambda j: strides[j])
    fits = {i: strides[j] for i, j in zip(by_size, by_stride)}
    if len({(grids[i][0] * s, grids[i][1] * s) for i, s in fits.items()}) != 1:
        return ""
    return (f"; the levels are in the wrong order: their grids fit strides {tuple(fits[i] for i in range(len(grids)))}"
            f", so give the levels in the order of strides {tuple(strides)}")


def check_level_shapes(shapes: Sequence[tuple[int, int]], strides: Sequence[int]) -> None:
    """The padded entry point's level (H, W) list: one pair of ints >= 1 per stride, one image size."""
    shapes = list(shapes)
    if len(shapes) != len(strides):
        raise ValueError(f"got {len(shapes)} level shapes for {len(strides)} strides {tuple(strides)}")
    for level, shape in enumerate(shapes):
        if (len(tuple(shape)) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape)):
            raise ValueError(f"level {level} shape must be a pair of ints (H, W) >= 1, got {shape!r}")
    check_grids([tuple(s) for s in shapes], strides, "level")


def check_padded(raw: Tensor, gt: Tensor, gt_mask: Tensor, shapes: Sequence[tuple[int, int]],
                 config: "LossConfig") -> None:
    """The padded entry point's inputs: level shapes vs strides, raw [B, A, 5 + C], gt [B, G >= 1, 5], bool mask
    [B, G], and every real slot (mask True) as ``check_padded_targets`` says; masked slots are never read."""
    check_level_shapes(shapes, config.strides)
    cells = sum(h * w for h, w in shapes)
    if raw.dim() != 3 or raw.shape[1] != cells or raw.shape[2] != 5 + config.num_classes:
        raise ValueError(f"predictions must be [B, {cells}, {5 + config.num_classes}], got {tuple(raw.shape)}")
    if not raw.is_floating_point():
        raise TypeError(f"predictions must be floating point, got {raw.dtype}")
    if gt.dim() != 3 or gt.shape[0] != raw.shape[0] or gt.shape[2] != 5:
        raise ValueError(f"targets must be [{raw.shape[0]}, G, 5], got {tuple(gt.shape)}")
    if gt.shape[1] < 1:
        raise ValueError("targets must have G >= 1 slots; mark unused slots False in the mask (pad_targets does)")
    if gt_mask.dtype != torch.bool or tuple(gt_mask.shape) != tuple(gt.shape[:2]):
        raise ValueError(f"target_mask must be bool {tuple(gt.shape[:2])}, got {gt_mask.dtype} {tuple(gt_mask.shape)}")
    check_padded_targets(gt, gt_mask, config.num_classes, config.box_format)


def check_padded_targets(gt: Tensor, gt_mask: Tensor, num_classes: int, box_format: BoxFormat = CENTRE_SIZE) -> None:
    """Real slots of gt [B, G, 5] (class and the box in ``box_format``): an integer class id in [0, C), a box finite
    in float32 whose extent the format allows (``BoxFormat.extent_ok``). The first bad slot is named by image and
    slot; masked slots may hold anything."""
    if not gt.is_floating_point():
        raise TypeError(f"targets must be floating point, got {gt.dtype}; {FLOAT_HINT}")
    if gt.device.type == "meta" or gt.numel() == 0:
        return
    image, slot = gt_mask.detach().cpu().nonzero(as_tuple=True)
    rows = gt.detach().cpu()[image, slot].double()  # [n, 5]
    check_rows(rows, lambda i: f"targets image {int(image[i])} slot {int(slot[i])}", num_classes, box_format)


def check_targets(targets: Tensor, batch_size: int, num_classes: int | None = None, device=None,
                  box_format: BoxFormat = CENTRE_SIZE) -> None:
    """Targets [N, 6] rows (image_index, class, then the box in ``box_format``: cx, cy, w, h or x1, y1, x2, y2),
    pixels.

    Image indices must be integers in [0, batch_size); class ids integers in [0, num_classes), or integers >= 0 when
    ``num_classes`` is None (``pad_targets`` does not know it); coordinates finite; w and h > 0 (x2 >= x1 and
    y2 >= y1 for corners). ``device``, when
    given, is the predictions' device. Targets on the meta device have no values: only shape, dtype and device are
    checked."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a tensor [N, 6], got {type(targets).__name__}")
    if targets.dim() != 2 or targets.shape[1] != 6:
        raise ValueError(f"targets must be [N, 6] rows (image_index, {box_format.row}), got shape "
                         f"{tuple(targets.shape)}")
    if not targets.is_floating_point():
        raise TypeError(f"targets must be floating point, got {targets.dtype}; {FLOAT_HINT}")
    if device is not None and targets.device != torch.device(device):
        raise ValueError(f"targets are on {targets.device} but predictions are on {device}")
    if targets.shape[0] == 0 or targets.device.type == "meta":
        return
    t = targets.detach().double().cpu()
    check_index_column(t[:, 0], GENERIC.image_index, batch_size, "batch size", _row_name)
    check_rows(t[:, 1:], _row_name, num_classes, box_format)


def _row_name(row: int) -> str:
    return f"targets row {row}"


@dataclass(frozen=True)
class Wording:
    """How a framework's error messages name the parts of a target row: the message templates of ``check_rows``
    and ``check_index_column``, filled with ``where`` (the row, in the user's own layout), ``value`` (the value as
    passed, in float64), ``allowed``, ``box`` and ``extent``."""

    image_index: str = "{where} has image index {value}; it must be {allowed}"
    class_id: str = "{where} has class id {value}; it must be {allowed}"
    nonfinite: str = "{where} has non-finite coordinates {box}"
    extent: str = "{where} has {extent}"


#: This library's own wording (targets [N, 6], padded slots, Megvii's labels).
GENERIC = Wording()
#: mmdetection's: its ground truths have labels and (x1, y1, x2, y2) bboxes.
MMDET_WORDING = Wording(image_index="{where}: image index {value}; it must be {allowed}",
                        class_id="{where}: label {value} is not a class id: it must be {allowed}",
                        nonfinite="{where}: box {box} is not finite in float32", extent="{where}: box {extent}")


def check_rows(rows: Tensor, where: Callable[[int], str], num_classes: int | None,
               box_format: BoxFormat = CENTRE_SIZE, wording: Wording = GENERIC) -> None:
    """Rows [n, 5] (class and the box in ``box_format``), float64 (the values as passed): a class id, then finite
    coordinates (finite in float32, the precision the losses run in), then the extent the format allows.
    ``where(i)`` names row i in the user's own layout; ``wording`` phrases the message. The first bad row raises
    ValueError."""
    check_index_column(rows[:, 0], wording.class_id, num_classes, "num_classes", where)
    finite = torch.isfinite(rows[:, 1:].float()).all(dim=1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise ValueError(wording.nonfinite.format(where=where(i), box=rows[i, 1:].tolist()))
    extent = box_format.extent_ok(rows[:, 1:])
    if not bool(extent.all()):
        i = int((~extent).nonzero()[0])
        raise ValueError(wording.extent.format(where=where(i), extent=box_format.extent_error(rows[i, 1:].tolist())))


def check_index_column(values: Tensor, message: str, limit: int | None, limit_name: str,
                       where: Callable[[int], str]) -> None:
    """Whole numbers in [0, limit), or >= 0 when ``limit`` is None; the first bad row raises ValueError with
    ``message`` (a ``Wording`` template) naming it and its value."""
    bad = ~torch.isfinite(values) | (values != torch.floor(values)) | (values < 0)
    if limit is not None:
        bad |= values >= limit
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        allowed = f"an integer in [0, {limit}) ({limit_name} = {limit})" if limit is not None else "an integer >= 0"
        raise ValueError(message.format(where=where(i), value=values[i].item(), allowed=allowed))


# ---------------------------------------------------------------------------------------------------------------
# valid targets that look misread


class TargetWarning(UserWarning):
    """Targets that are valid but look like a misreading of the pixel box format."""


#: A box counts as mostly outside the image when less than this share of its area is inside.
INSIDE_SHARE = 0.5


def misreadings(boxes: Tensor, image: tuple[int, int], box_format: BoxFormat = CENTRE_SIZE) -> dict[str, str]:
    """What looks misread in boxes [n, 4] (in ``box_format``) on an image (H, W) in pixels: every coordinate within
    [0, 1] (normalised?), or the boxes read better in the other box format (``other_format_fits``). Returns
    {kind: message}, kind "normalised" or "format"."""
    if boxes.shape[0] == 0:
        return {}
    b = boxes.detach().double().cpu()
    height, width = image
    layout = ", ".join(box_format.columns)
    found = {}
    if bool(((b >= 0) & (b <= 1)).all()):
        found["normalised"] = (
            f"all target coordinates lie within [0, 1]: are they normalised? Targets are ({layout}) in pixels "
            f"of the {height}x{width} image (scale them by the image size); nothing is rescaled")
    other = CORNERS if box_format is CENTRE_SIZE else CENTRE_SIZE
    other_name = "corners (x1, y1, x2, y2)" if other is CORNERS else "centres and sizes (cx, cy, w, h)"
    width_, height_ = box_format.extent(b)
    outside = int((inside_area(b, image, box_format) < INSIDE_SHARE * width_ * height_).sum())
    if 2 * outside > b.shape[0]:
        found["format"] = (
            f"{outside} of {b.shape[0]} target boxes lie mostly outside the {height}x{width} image: are they "
            f"{other_name}? Targets are ({layout}) in pixels; nothing is converted")
    elif other_format_fits(b, image, box_format, other):
        found["format"] = (
            f"the target boxes fit the {height}x{width} image better read as {other_name}: "
            f"{outside_share(b, image, box_format):.0%} of their area lies outside it as ({layout}), "
            f"{outside_share(b, image, other):.0%} as {other_name}. Are they {other_name}? Targets are ({layout}) "
            "in pixels; nothing is converted")
    return found


#: How much more of the boxes' area, on average, must lie outside the image in the given format than in the other
#: for ``other_format_fits``: measured on the seeded scenarios (``scenarios.KINDS`` at 640x640, 128x160 and 64x64, six
#: seeds, B=4), correct batches never came within this margin while misread ones exceeded it (bar boxes larger than
#: the image, which read plausibly either way).
FORMAT_MARGIN = 0.1


def other_format_fits(boxes: Tensor, image: tuple[int, int], box_format: BoxFormat, other: BoxFormat) -> bool:
    """Whether boxes [n, 4] (n >= 2) are more likely in ``other`` than in ``box_format``: every box is a valid box
    in the other format (a corner box always has x2 >= x1 and y2 >= y1; a (cx, cy, w, h) batch read as corners
    almost never does), and read that way the boxes' mean share of area outside the image is smaller by more than
    ``FORMAT_MARGIN``."""
    if boxes.shape[0] < 2 or not bool(other.extent_ok(boxes).all()):
        return False
    return outside_share(boxes, image, box_format) > outside_share(boxes, image, other) + FORMAT_MARGIN


def outside_share(boxes: Tensor, image: tuple[int, int], box_format: BoxFormat) -> float:
    """The mean, over boxes [n, 4] in ``box_format``, of the share of each box's area outside the image; a box of
    zero area (a corner box may have x2 = x1) counts as inside."""
    width, height = box_format.extent(boxes)
    area = width * height
    share = 1 - inside_area(boxes, image, box_format) / area.clamp(min=1e-12)
    return float(torch.where(area > 0, share.clamp(min=0), torch.zeros_like(share)).mean())


def inside_area(boxes: Tensor, image: tuple[int, int], box_format: BoxFormat = CENTRE_SIZE) -> Tensor:
    """[n]: area of each box [n, 4] (in ``box_format``) that lies inside the image [0, W] x [0, H]."""
    x1, y1, x2, y2 = box_format.corners(boxes)
    inside_w = (torch.clamp(x2, max=float(image[1])) - torch.clamp(x1, min=0.0)).clamp(min=0)
    inside_h = (torch.clamp(y2, max=float(image[0])) - torch.clamp(y1, min=0.0)).clamp(min=0)
    return inside_w * inside_h


class MisreadingWarnings:
    """Issues each ``misreadings`` message at most once per owner (one per module instance)."""

    def __init__(self) -> None:
        self.given: set[str] = set()

    def check(self, boxes: Tensor, image: tuple[int, int], box_format: BoxFormat = CENTRE_SIZE) -> None:
        if boxes.device.type == "meta":
            return
        for kind, message in misreadings(boxes, image, box_format).items():
            if kind not in self.given:
                self.given.add(kind)
                warnings.warn(message, TargetWarning, stacklevel=4)
