"""Seeded scenario generator, beside the core: head outputs and targets of the kinds that parity, the benchmark, the
tests and the tools run on (imports torch only). Predictions are per-level lists [B, 1, H, W, 5 + C]; targets
[N, 6] rows (image_index, class, cx, cy, w, h) in pixels, or (image_index, class, x1, y1, x2, y2) for a mode whose
box format is corners (``box_format="xyxy"``: mmdet mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .box_format import BOX_FORMATS

KINDS = ("random", "fitted", "fresh", "crowded", "sparse", "empty", "duplicates", "border", "oversized", "coco")


class HeadBatch:
    """Sizes read from a batch's per-level ``predictions`` [B, 1, H, W, 5 + C] (with ``targets`` [N, 6])."""

    predictions: list[Tensor]
    targets: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.predictions[0].shape[0])

    def image_size_for(self, strides: Sequence[int]) -> tuple[int, int]:
        """(H, W) in pixels: level 0's map size times its stride."""
        return int(self.predictions[0].shape[2]) * strides[0], int(self.predictions[0].shape[3]) * strides[0]


@dataclass
class Scenario(HeadBatch):
    kind: str
    seed: int
    image_size: tuple[int, int]
    strides: tuple[int, ...]
    num_classes: int
    predictions: list[Tensor]
    targets: Tensor


def make_scenario(kind: str, batch_size: int = 2, image_size: tuple[int, int] = (640, 640), num_classes: int = 80,
                  strides: tuple[int, ...] = (8, 16, 32), seed: int = 0,
                  targets_per_image: int | None = None, box_format: str = "cxcywh") -> Scenario:
    """One seeded batch of ``kind`` (see ``KINDS``); ``targets_per_image`` replaces the kind's per-image counts by
    that exact number (the benchmark's growth-with-G sweep). ``box_format`` "xyxy" gives the same boxes as corners
    (cx -/+ w / 2, computed once here: these corners are then the targets' truth)."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}; choose from {KINDS}")
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {tuple(BOX_FORMATS)}, got {box_format!r}")
    height, width = image_size
    for s in strides:
        if height % s or width % s:
            raise ValueError(f"image size {height}x{width} is not divisible by stride {s}")
    gen = torch.Generator().manual_seed(seed)
    counts = _counts(kind, batch_size, gen) if targets_per_image is None else [int(targets_per_image)] * batch_size
    targets = _targets(kind, counts, height, width, num_classes, gen)
    predictions = [_level(kind, batch_size, height // s, width // s, s, num_classes, targets, gen) for s in strides]
    targets = in_box_format(targets, box_format)
    return Scenario(kind, seed, (height, width), tuple(strides), num_classes, predictions, targets)


def in_box_format(targets: Tensor, box_format: str) -> Tensor:
    """Generated [N, 6] targets (image, class, cx, cy, w, h) in ``box_format`` (``box_format.BOX_FORMATS``):
    "cxcywh" as they are, "xyxy" as corners (``boxes_in_format``)."""
    return torch.cat((targets[:, :2], boxes_in_format(targets[:, 2:6], box_format)), dim=1)


def boxes_in_format(boxes: Tensor, box_format: str) -> Tensor:
    """Generated boxes [..., 4] (cx, cy, w, h) in ``box_format``: as they are ("cxcywh"), or as corners
    (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) computed once ("xyxy"; those corners are then the truth)."""
    if box_format != "xyxy":
        return boxes
    centre, half = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat((centre - half, centre + half), dim=-1)


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _counts(kind: str, batch: int, gen: torch.Generator) -> list[int]:
    if kind == "empty":
        return [0] * batch
    if kind == "crowded":
        return torch.randint(100, 201, (batch,), generator=gen).tolist()
    if kind == "sparse":
        return torch.randint(0, 4, (batch,), generator=gen).tolist()
    if kind == "coco":  # mean about 7, at most 50
        return torch.clamp(torch.poisson(torch.full((batch,), 7.0), generator=gen), 0, 50).long().tolist()
    return torch.randint(1, 11, (batch,), generator=gen).tolist()


def _targets(kind: str, counts: list[int], height: int, width: int, num_classes: int, gen: torch.Generator) -> Tensor:
    rows = []
    for image, n in enumerate(counts):
        if n == 0:
            continue
        if kind == "crowded":
            w, h = _uniform(gen, n, 6, 40), _uniform(gen, n, 6, 40)
        elif kind == "sparse":
            w, h = _uniform(gen, n, 0.3 * width, 0.9 * width), _uniform(gen, n, 0.3 * height, 0.9 * height)
        elif kind == "oversized":
            w, h = _uniform(gen, n, 0.8 * width, 1.6 * width), _uniform(gen, n, 0.8 * height, 1.6 * height)
        else:
            w, h = _uniform(gen, n, 8, 0.5 * width), _uniform(gen, n, 8, 0.5 * height)
        cx, cy = _uniform(gen, n, 0, width), _uniform(gen, n, 0, height)
        if kind == "border":  # every box touches a border: left/top or right/bottom edge exactly on it
            left = torch.rand(n, generator=gen) < 0.5
            cx = torch.where(left, w / 2, width - w / 2)
            cy = torch.where(torch.rand(n, generator=gen) < 0.5, h / 2, height - h / 2)
        cls = torch.randint(0, num_classes, (n,), generator=gen).float()
        block = torch.stack((torch.full((n,), float(image)), cls, cx, cy, w, h), dim=1)
        if kind == "duplicates":  # each box again with another class
            again = block.clone()
            again[:, 1] = (again[:, 1] + 1 + torch.randint(0, max(num_classes - 1, 1), (n,), generator=gen)) % num_classes
            block = torch.cat((block, again))
        rows.append(block)
    if not rows:
        return torch.zeros((0, 6))
    return torch.cat(rows)


def _level(kind: str, batch: int, h: int, w: int, stride: int, num_classes: int, targets: Tensor,
           gen: torch.Generator) -> Tensor:
    if kind == "fresh":  # freshly initialised head: zero box regression, prior-probability logits everywhere
        out = torch.zeros((batch, 1, h, w, 5 + num_classes))
        out[..., 4:] = -4.59511985013459  # log(0.01 / 0.99)
        return out
    out = torch.randn((batch, 1, h, w, 5 + num_classes), generator=gen)
    out[..., :4] *= 0.5
    out[..., 4:] = out[..., 4:] * 2.0 - 3.0
    if kind in ("fitted", "coco", "crowded"):
        _fit_to_targets(out, stride, targets, gen)
    return out


def _fit_to_targets(out: Tensor, stride: int, targets: Tensor, gen: torch.Generator) -> None:
    """Mid-training predictions: cells near a target regress towards it and score its class."""
    _, _, h, w, _ = out.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for row in targets:
        b, cls, cx, cy, bw, bh = row.tolist()
        near = ((xs + 0.5) * stride - cx).abs().le(2.5 * stride) & ((ys + 0.5) * stride - cy).abs().le(2.5 * stride)
        if not bool(near.any()):
            continue
        noise = 0.1 * torch.randn((int(near.sum()), 4), generator=gen)
        cell = out[int(b), 0][near]
        cell[:, 0] = cx / stride - xs[near] + noise[:, 0]
        cell[:, 1] = cy / stride - ys[near] + noise[:, 1]
        cell[:, 2] = torch.log(torch.tensor(bw / stride)) + noise[:, 2]
        cell[:, 3] = torch.log(torch.tensor(bh / stride)) + noise[:, 3]
        cell[:, 4] += 3.0
        cell[:, 5 + int(cls)] += 4.0
        out[int(b), 0][near] = cell
