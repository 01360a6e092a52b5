"""Head outputs: flattening the per-level maps into one cell axis, the cell grid, and box decoding.

Shape legend used across the package: B batch, A anchors/cells (all levels, levels in stride order, each level
row-major), G padded targets, C classes, K top-k. A level's raw output is [B, 1, H, W, 5 + C]: (x, y, log w, log h)
box logits relative to the cell, then the objectness logit, then C class logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Grid:
    """Per-cell constants of the flattened head: cell column, row and stride, each float [A]; and the levels'
    (H, W), which the windowed (megvii) assignment needs to locate a cell from its column and row (None when unknown).
    """

    x_shifts: Tensor
    y_shifts: Tensor
    strides: Tensor
    shapes: tuple[tuple[int, int], ...] | None = None

    @property
    def num_cells(self) -> int:
        return int(self.strides.shape[0])


def make_grid(level_shapes: Sequence[tuple[int, int]], strides: Sequence[int],
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Grid:
    """Cell coordinates of every level, concatenated in level order, row-major within a level."""
    xs, ys, ss = [], [], []
    for (h, w), stride in zip(level_shapes, strides):
        yv, xv = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        xs.append(xv.reshape(-1))
        ys.append(yv.reshape(-1))
        ss.append(torch.full((h * w,), float(stride), device=device))
    shapes = tuple((int(h), int(w)) for h, w in level_shapes)
    return Grid(torch.cat(xs).to(dtype), torch.cat(ys).to(dtype), torch.cat(ss).to(dtype), shapes)


def image_size(shapes: Sequence[tuple[int, int]], strides: Sequence[int]) -> tuple[int, int]:
    """(height, width) in pixels of the image that level 0's grid covers."""
    return shapes[0][0] * strides[0], shapes[0][1] * strides[0]


def level_shapes(predictions: Sequence[Tensor]) -> list[tuple[int, int]]:
    """(H, W) of each level map [B, 1, H, W, 5 + C]."""
    return [(int(p.shape[2]), int(p.shape[3])) for p in predictions]


def flatten_levels(predictions: Sequence[Tensor]) -> Tensor:
    """Concatenate level maps [B, 1, H, W, 5 + C] into raw outputs [B, A, 5 + C]."""
    return torch.cat([p.reshape(p.shape[0], p.shape[2] * p.shape[3], p.shape[-1]) for p in predictions], dim=1)


def unflatten_levels(raw: Tensor, shapes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """The inverse of ``flatten_levels``: raw [B, A, 5 + C] (or its gradient) split into level maps
    [B, 1, H, W, 5 + C] of the levels' (H, W)."""
    sizes = [h * w for h, w in shapes]
    return [part.reshape(raw.shape[0], 1, h, w, raw.shape[-1])
            for part, (h, w) in zip(raw.split(sizes, dim=1), shapes)]


def decode_boxes(raw: Tensor, grid: Grid) -> Tensor:
    """Box logits [B, A, >=4] to boxes [B, A, 4] (cx, cy, w, h) in pixels, as ``prepare_predictions`` does:
    centre = (logit + cell) * stride, size = exp(logit) * stride."""
    cell = torch.stack((grid.x_shifts, grid.y_shifts), dim=-1)  # [A, 2]
    stride = grid.strides.unsqueeze(-1)  # [A, 1]
    centers = (raw[..., :2] + cell) * stride
    sizes = torch.exp(raw[..., 2:4]) * stride
    return torch.cat((centers, sizes), dim=-1)


def decode_corners(raw: Tensor, grid: Grid) -> Tensor:
    """Box logits [B, A, >=4] to boxes [B, A, 4] (x1, y1, x2, y2) in pixels, as mmdetection's ``_bbox_decode``
    does against the unshifted priors (x * s, y * s): centre = logit * s + x * s, size = exp(logit) * s, corners
    centre -/+ size / 2."""
    stride = grid.strides.unsqueeze(-1)  # [A, 1]
    prior = torch.stack((grid.x_shifts, grid.y_shifts), dim=-1) * stride  # [A, 2]
    centers = raw[..., :2] * stride + prior
    sizes = torch.exp(raw[..., 2:4]) * stride
    return torch.cat((centers - sizes / 2, centers + sizes / 2), dim=-1)
