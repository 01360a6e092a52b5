"""Reductions of boolean masks for the static graph: counts in float32 and "any" without int64 tensors.

Shape legend: B batch, A cells, G padded targets, M window slots (any mask shape works).

A boolean sum exports as a cast to int64 and an int64 reduction: on a [B, G, A] mask that writes 8 bytes per
element (at B=16, G=196, A=8400, 210 MB per call). A float32 count is exact below 2^24 = 16,777,216 elements along
the reduced axis (far above any A or G), and it is also the faster reduction in eager torch on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .export_form import exporting


def count_true(mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """float32: the number of True entries along ``dim`` (exact below 2^24)."""
    return mask.to(torch.float32).sum(dim, keepdim=keepdim)


def any_true(mask: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """bool: whether any entry along ``dim`` is True; torch's own ``any`` in eager, a float32 max under ONNX export
    (where ``any`` becomes an int64 cast and ReduceMax)."""
    if exporting():
        return mask.to(torch.float32).amax(dim, keepdim=keepdim) > 0
    return mask.any(dim, keepdim=keepdim)
