"""Sanitising padded target slots: the padded target contract, enforced at the entry of the static computation.
(Padding the ragged [N, 6] targets into slots is ``targets.pad_targets``.)

Shape legend: B batch, G padded target slots. A slot is a row (class, then the box in the mode's format: cx, cy, w, h
or x1, y1, x2, y2), pixels, of gt [B, G, 5] with a bool gt_mask [B, G].

* A masked slot (mask False) never matters, whatever it holds (NaN, +-inf, any class id, any size): it is replaced
  by the zero row before anything reads it, so every mode sees exactly what zero padding gives.
* A real slot (mask True) must hold a finite box with w, h > 0 (x2 >= x1 and y2 >= y1 for corners) and an integer
  class id in [0, C). One that does not
  is also replaced by the zero row and taken out of the mask (never assigned, its class id never used as an index),
  and the loss becomes NaN rather than a plausible number, as for a non-finite prediction.

Everything here is an element-wise ``where`` on [B, G]: no host synchronisation, no data-dependent shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..box_format import CENTRE_SIZE, BoxFormat


@dataclass
class Slots:
    """The sanitised targets: ``gt`` [B, G, 5] (zero rows where ``mask`` is False), ``mask`` bool [B, G] (the real,
    well-formed slots) and ``poison`` (a float scalar, 0, or NaN when a real slot is malformed)."""

    gt: Tensor
    mask: Tensor
    poison: Tensor


def well_formed(gt: Tensor, num_classes: int, box_format: BoxFormat = CENTRE_SIZE) -> Tensor:
    """bool [B, G]: finite box of an extent the format allows (``BoxFormat.extent_ok``) and an integer class id in
    [0, num_classes). NaN fails every test."""
    cls, box = gt[..., 0], gt[..., 1:5]
    ok = torch.isfinite(box).all(-1) & box_format.extent_ok(box)  # [B, G]
    return ok & (cls >= 0) & (cls < num_classes) & (cls == torch.floor(cls))


def sanitise_slots(gt: Tensor, gt_mask: Tensor, num_classes: int, box_format: BoxFormat = CENTRE_SIZE) -> Slots:
    """The ``Slots`` of gt [B, G, 5] and gt_mask bool [B, G]; the only place that reads the raw slot values."""
    ok = well_formed(gt, num_classes, box_format)
    mask = gt_mask & ok
    clean = torch.where(mask.unsqueeze(-1), gt, torch.zeros((), dtype=gt.dtype, device=gt.device))  # [B, G, 5]
    nan = torch.full((), float("nan"), dtype=gt.dtype, device=gt.device)
    poison = torch.where(gt_mask & ~ok, nan, torch.zeros_like(nan)).sum()
    return Slots(clean, mask, poison)
