"""Tie analysis: is a difference between two SimOTA answers explained by the reference's own ambiguity?

Costs are recomputed in float64 from the float32 quantities the references compute: the IoUs of the mode's own
formula (``boxes``) and the probabilities sqrt(sigmoid(cls) * sigmoid(obj)); logs, sums and the dynamic k are then
float64. (A float64 sigmoid would not be a better oracle: where float32 rounds a probability to 1, the references'
clamped log makes the cost 100, and that is the answer to explain.) When another runtime is compared, whose sigmoid
and exp may differ from torch's by a few ulps, the tolerance also covers how far such a change moves each cost. Two costs are "equal within float32
rounding" when they differ by at most ``tolerance``: 16 float32 epsilons of the summed class and IoU terms plus 4 of
the cost itself (the penalty term brings costs to 1e5, where one float32 step is ~0.008; 1e6 in megvii mode, ~0.06).
Megvii mode uses the regular mode's structure (union candidates, argmin over all targets, no bias) with its own
centre-only test (radius 1.5), the fast IoU formula and the 1e6 penalty, all read from ``LossConfig``.

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

from ..config import CANDIDATE_TOPK, IOU_COST_WEIGHT, LossConfig
from ..grid import Grid
from ..static.cost import candidate_masks, pairwise_iou

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


def image_ties(raw: Tensor, gt: Tensor, grid: Grid, config: LossConfig, input_ulps: int = 0) -> ImageTies:
    """Tie facts for one image: raw [A, 5 + C] head outputs, gt [n, 5] (class, cx, cy, w, h), n >= 1.

    ``input_ulps`` is how many float32 ulps the compared implementation's element-wise transcendentals (sigmoid,
    exp) may differ from torch's: 0 for the static module in eager torch (bit-identical inputs to the costs), a few
    for another runtime. Costs then count as equal when they differ by less than what that perturbation of the
    probabilities and predicted boxes can move them.
    """
    raw = raw.detach().float().unsqueeze(0)
    gt = gt.float().unsqueeze(0)
    boxes = config.box_format.decode(raw, grid)
    in_box, in_centre = candidate_masks(gt[..., 1:5], grid, config)
    usable = torch.isfinite(boxes).all(-1) & torch.isfinite(raw).all(-1)  # [1, A]
    near = (in_box | in_centre) & usable.unsqueeze(1)
    candidates = (near.any(1, keepdim=True).expand_as(near) if config.union_candidates else near)[0]  # [n, A]
    iou32 = pairwise_iou(gt[..., 1:5], boxes, config)[0]  # [n, A]
    iou = iou32.double()
    classes = gt[0, :, 0].long()
    probabilities = (raw[0, :, 5:].sigmoid() * raw[0, :, 4:5].sigmoid()).sqrt()  # [A, C] float32, as the references
    cls, cls_slack = class_cost_with_slack(probabilities, classes, input_ulps)
    eps = config.iou_cost_eps
    iou_term = IOU_COST_WEIGHT * -torch.log(iou + eps)
    cost = cls + iou_term + config.outside_cost * (~(in_box & in_centre))[0].double()
    tolerance = 16 * EPS32 * (cls.abs() + iou_term.abs()) + 4 * EPS32 * cost.abs() + cls_slack
    iou_slack = torch.zeros_like(iou)
    if input_ulps:
        iou_slack = iou_perturbation(gt[0, :, 1:5], boxes[0], config, input_ulps, iou)
        tolerance = tolerance + IOU_COST_WEIGHT * (torch.log(iou + eps) - torch.log((iou - iou_slack).clamp(min=0) + eps))
    k_range = admissible_ks(iou, candidates, config, iou_slack)
    ambiguous, possible = selection_status(cost, tolerance, candidates, k_range)
    return ImageTies(ambiguous, contested_ties(cost, tolerance, candidates, possible, config.union_candidates), k_range)


def class_cost_with_slack(probabilities: Tensor, classes: Tensor, input_ulps: int) -> tuple[Tensor, Tensor]:
    """(cost, slack), float64 [n, A]: SimOTA's class cost from the float32 probabilities [A, C] that the references
    compute, logs and sum in float64; and how far ``input_ulps`` ulps of change in each probability can move it
    (large where a probability is within a few ulps of 1, where torch's -100 clamp makes the cost jump)."""
    neg, pos = bce_logs(probabilities)  # [A, C] each
    cost = (neg - pos)[:, classes].T - neg.sum(-1)  # [n, A]
    if not input_ulps:
        return cost, torch.zeros_like(cost)
    neg_move, pos_move = torch.zeros_like(neg), torch.zeros_like(pos)
    for direction in (0.0, 1.0):
        moved = probabilities
        for _ in range(input_ulps):
            moved = torch.nextafter(moved, torch.full_like(moved, direction))
        moved_neg, moved_pos = bce_logs(moved)
        neg_move = torch.maximum(neg_move, (moved_neg - neg).abs())
        pos_move = torch.maximum(pos_move, (moved_pos - pos).abs())
    return cost, neg_move.sum(-1) + (pos_move + neg_move)[:, classes].T


def bce_logs(probabilities: Tensor) -> tuple[Tensor, Tensor]:
    """float64 (max(log1p(-p), -100), max(log(p), -100)) of float32 probabilities, torch's clamps kept."""
    p = probabilities.double()
    return torch.log1p(-p).clamp(min=-100.0), torch.log(p).clamp(min=-100.0)


def iou_perturbation(gt_boxes: Tensor, boxes: Tensor, config: LossConfig, input_ulps: int, iou: Tensor) -> Tensor:
    """float64 [n, A]: largest IoU change when every predicted box component moves by ``input_ulps`` relative ulps."""
    step = input_ulps * 2 * EPS32
    moved = [pairwise_iou(gt_boxes.unsqueeze(0), (boxes * scale).unsqueeze(0), config)[0].double()
             for scale in (1 + step, 1 - step)]
    sizes_moved = boxes.clone()
    sizes_moved[:, 2:] *= 1 + step
    moved.append(pairwise_iou(gt_boxes.unsqueeze(0), sizes_moved.unsqueeze(0), config)[0].double())
    return torch.stack([(m - iou).abs() for m in moved]).amax(0)


def admissible_ks(iou: Tensor, candidates: Tensor, config: LossConfig, iou_slack: Tensor | None = None) -> Tensor:
    """int64 [n, 2]: smallest and largest dynamic k that float32 rounding of the top-10 IoU sum allows (plus the
    IoUs' own uncertainty ``iou_slack`` [n, A] when comparing another runtime)."""
    top = min(CANDIDATE_TOPK, iou.shape[-1])
    total = torch.where(candidates, iou, torch.zeros_like(iou)).topk(top, dim=-1).values.sum(-1)
    slack = 16 * EPS32 * total.clamp(min=1.0)
    if iou_slack is not None:
        slack = slack + top * torch.where(candidates, iou_slack, torch.zeros_like(iou_slack)).amax(-1)
    if config.ks_bias is not None:
        total = total * config.ks_bias
        slack = slack * config.ks_bias
    low = torch.floor(total - slack).clamp(min=1).long()
    high = torch.floor(total + slack).clamp(min=1).long()
    return torch.stack((low, high), dim=-1)


def selection_status(cost: Tensor, tolerance: Tensor, candidates: Tensor, k_range: Tensor) -> tuple[Tensor, Tensor]:
    """(ambiguous, possibly selected), bool [n, A], for each target's top-k among its candidates.

    Each cost is an interval [c - tol, c + tol]: cell j is surely cheaper than a when c_j + tol_j < c_a - tol_a and
    maybe cheaper when c_j - tol_j <= c_a + tol_a.
    """
    inf = torch.full_like(cost, float("inf"))
    low = torch.where(candidates, cost - tolerance, inf)
    high = torch.where(candidates, cost + tolerance, inf)
    surely_cheaper = torch.searchsorted(high.sort(dim=-1).values.contiguous(), low.contiguous(), right=False)  # [n, A]
    maybe_cheaper = torch.searchsorted(low.sort(dim=-1).values.contiguous(), high.contiguous(), right=True)
    surely_in = maybe_cheaper <= k_range[:, :1]
    surely_out = surely_cheaper >= k_range[:, 1:]
    possible = candidates & ~surely_out
    return possible & ~surely_in, possible


def contested_ties(cost: Tensor, tolerance: Tensor, candidates: Tensor, possible: Tensor, union: bool) -> Tensor:
    """bool [A]: cells possibly selected by two or more targets where two or more contenders' cost intervals reach
    the cheapest one's. Contenders are all the image's targets when ``union`` (regular, megvii modes: the argmin
    over all targets), the possible selectors otherwise (fast mode)."""
    contested = possible.sum(0) >= 2
    contenders = candidates if union else possible
    inf = torch.full_like(cost, float("inf"))
    best_high = torch.where(contenders, cost + tolerance, inf).amin(0)  # [A]
    rivals = (contenders & (cost - tolerance <= best_high)).sum(0)
    return contested & (rivals >= 2)
