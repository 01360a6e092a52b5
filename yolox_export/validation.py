"""Input checks for the public entry points. They run eagerly, outside any traced graph, and raise errors that
name what is wrong; nothing is dropped, truncated or guessed."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


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
    image_size = None
    batch = None
    for level, (p, stride) in enumerate(zip(predictions, strides)):
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
        size = (p.shape[2] * stride, p.shape[3] * stride)
        if image_size is None:
            image_size = size
        elif size != image_size:
            raise ValueError(
                f"prediction level {level} grid {tuple(p.shape[2:4])} at stride {stride} covers an image of "
                f"{size[0]}x{size[1]}; level 0 covers {image_size[0]}x{image_size[1]}"
            )
        if p.device != predictions[0].device:
            raise ValueError(f"prediction level {level} is on {p.device}; level 0 is on {predictions[0].device}")
        if p.device.type == "meta":  # no values to inspect: shapes, dtypes and devices are all that can be checked
            continue
        if bool(torch.isfinite(p.detach().sum())):  # one pass: a NaN or inf anywhere makes the sum non-finite
            continue
        bad = ~torch.isfinite(p)  # the sum overflowed or something is non-finite: find it
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"prediction level {level} has a non-finite value {p[index].item()} at index {index}")


def check_targets(targets: Tensor, batch_size: int, num_classes: int | None = None, device=None) -> None:
    """Targets [N, 6] rows (image_index, class, cx, cy, w, h), pixels.

    Image indices must be integers in [0, batch_size); class ids integers in [0, num_classes), or integers >= 0 when
    ``num_classes`` is None (``pad_targets`` does not know it); coordinates finite; w and h > 0. ``device``, when
    given, is the predictions' device. Targets on the meta device have no values: only shape, dtype and device are
    checked."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a tensor [N, 6], got {type(targets).__name__}")
    if targets.dim() != 2 or targets.shape[1] != 6:
        raise ValueError(f"targets must be [N, 6] rows (image_index, class, cx, cy, w, h), got shape {tuple(targets.shape)}")
    if not targets.is_floating_point():
        raise TypeError(f"targets must be floating point, got {targets.dtype}")
    if device is not None and targets.device != torch.device(device):
        raise ValueError(f"targets are on {targets.device} but predictions are on {device}")
    if targets.shape[0] == 0 or targets.device.type == "meta":
        return
    t = targets.detach().double().cpu()
    _check_index_column(t[:, 0], "image index", batch_size, "batch size")
    _check_index_column(t[:, 1], "class id", num_classes, "num_classes")
    finite = torch.isfinite(t[:, 2:]).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(f"targets row {row} has non-finite coordinates {t[row, 2:].tolist()}")
    positive = (t[:, 4] > 0) & (t[:, 5] > 0)
    if not bool(positive.all()):
        row = int((~positive).nonzero()[0])
        raise ValueError(f"targets row {row} has w, h = {t[row, 4].item()}, {t[row, 5].item()}; both must be > 0")


def _check_index_column(values: Tensor, what: str, limit: int | None, limit_name: str) -> None:
    """Integers in [0, limit), or integers >= 0 when ``limit`` is None; names the first bad row and its value."""
    bad = ~torch.isfinite(values) | (values != torch.floor(values)) | (values < 0)
    if limit is not None:
        bad |= values >= limit
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        allowed = f"an integer in [0, {limit}) ({limit_name} = {limit})" if limit is not None else "an integer >= 0"
        raise ValueError(f"targets row {row} has {what} {values[row].item()}; it must be {allowed}")
