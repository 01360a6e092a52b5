"""Tie analysis: is a difference between two SimOTA answers explained by the reference's own ambiguity?

Costs are recomputed in float64 from the float32 inputs. The IoUs enter as the float32 values of the mode's own
formula (``boxes``), which every implementation here computes with the same operations, so they are not a source of
disagreement; the class cost and the dynamic k are recomputed in float64. Two costs are "equal within float32
rounding" when they differ by at most ``tolerance``: 16 float32 epsilons of the summed class and IoU terms plus 4 of
the cost itself (the penalty term brings costs to 1e5, where one float32 step is ~0.008).

For each target a cell is surely selected (even if every near-equal cell were ordered first it is within the smallest
admissible k), surely not selected, or ambiguous. A differing cell is explained by a tie when it is ambiguous for some
target, when its winner is contested by costs equal within rounding, or when the two answers differ on a dynamic k
whose float64 value lies within rounding of an integer (that shows as ambiguous cells too). Anything else is a real
mismatch.

Shape legend: n targets of one image, A cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import CANDIDATE_TOPK, IOU_COST_WEIGHT, OUTSIDE_COST, LossConfig
from .grid import Grid, decode_boxes
from .static.assign import candidate_masks, class_cost, pairwise_iou

EPS32 = 2.0**-23


@dataclass
class ImageTies:
    """Per-image tie facts. ``ambiguous`` bool [n, A]; ``contest_tie`` bool [A]; ``k_range`` int64 [n, 2]."""

    ambiguous: Tensor
    contest_tie: Tensor
    k_range: Tensor

    @property
    def explained_cells(self) -> Tensor:
        return self.ambiguous.any(0) | self.contest_tie  # [A]


def image_ties(raw: Tensor, gt: Tensor, grid: Grid, config: LossConfig) -> ImageTies:
    """Tie facts for one image: raw [A, 5 + C] head outputs, gt [n, 5] (class, cx, cy, w, h), n >= 1."""
    raw = raw.detach().float().unsqueeze(0)
    gt = gt.float().unsqueeze(0)
    boxes = decode_boxes(raw, grid)
    in_box, in_centre = candidate_masks(gt[..., 1:5], grid, config)
    usable = torch.isfinite(boxes).all(-1) & torch.isfinite(raw[..., 4:]).all(-1)  # [1, A]
    near = (in_box | in_centre) & usable.unsqueeze(1)
    candidates = (near.any(1, keepdim=True).expand_as(near) if config.mode == "regular" else near)[0]  # [n, A]
    iou = pairwise_iou(gt[..., 1:5], boxes, config.mode)[0].double()  # [n, A]
    cls = class_cost(raw[..., 5:].double(), raw[..., 4].double(), gt[..., 0].long())[0]
    iou_term = IOU_COST_WEIGHT * -torch.log(iou + 1e-8)
    cost = cls + iou_term + OUTSIDE_COST * (~(in_box & in_centre))[0].double()
    tolerance = 16 * EPS32 * (cls.abs() + iou_term.abs()) + 4 * EPS32 * cost.abs()
    k_range = admissible_ks(iou, candidates, config)
    ambiguous, possible = selection_status(cost, tolerance, candidates, k_range)
    return ImageTies(ambiguous, contested_ties(cost, tolerance, candidates, possible, config.mode), k_range)


def admissible_ks(iou: Tensor, candidates: Tensor, config: LossConfig) -> Tensor:
    """int64 [n, 2]: smallest and largest dynamic k that float32 rounding of the top-10 IoU sum allows."""
    top = min(CANDIDATE_TOPK, iou.shape[-1])
    total = torch.where(candidates, iou, torch.zeros_like(iou)).topk(top, dim=-1).values.sum(-1)
    if config.mode == "fast":
        total = total * config.dynamic_ks_bias
    slack = 16 * EPS32 * total.clamp(min=1.0)
    low = torch.floor(total - slack).clamp(min=1).long()
    high = torch.floor(total + slack).clamp(min=1).long()
    return torch.stack((low, high), dim=-1)


def selection_status(cost: Tensor, tolerance: Tensor, candidates: Tensor, k_range: Tensor) -> tuple[Tensor, Tensor]:
    """(ambiguous, possibly selected), bool [n, A], for each target's top-k among its candidates."""
    masked = torch.where(candidates, cost, torch.full_like(cost, float("inf")))
    ordered = masked.sort(dim=-1).values  # [n, A]
    surely_cheaper = torch.searchsorted(ordered, (masked - tolerance).contiguous(), right=False)  # [n, A]
    maybe_cheaper = torch.searchsorted(ordered, (masked + tolerance).contiguous(), right=True)
    surely_in = maybe_cheaper <= k_range[:, :1]
    surely_out = surely_cheaper >= k_range[:, 1:]
    possible = candidates & ~surely_out
    return possible & ~surely_in, possible


def contested_ties(cost: Tensor, tolerance: Tensor, candidates: Tensor, possible: Tensor, mode: str) -> Tensor:
    """bool [A]: cells possibly selected by two or more targets whose two cheapest contenders are equal within
    rounding. Contenders are all the image's targets in regular mode, the possible selectors in fast mode."""
    contested = possible.sum(0) >= 2
    contenders = candidates if mode == "regular" else possible
    inf = torch.full_like(cost, float("inf"))
    keyed = torch.where(contenders, cost, inf)
    if keyed.shape[0] < 2:
        return torch.zeros_like(contested)
    best, order = keyed.topk(2, dim=0, largest=False)  # [2, A]
    tol = torch.maximum(tolerance.gather(0, order[:1]), tolerance.gather(0, order[1:2]))[0]
    return contested & (best[1] - best[0] <= tol)
