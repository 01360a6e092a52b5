"""SimOTA's selection and its tail, shared by the dense (``assign``) and windowed (``window``) assignments.

Shape legend: B batch, G padded targets, X the cells a target is ranked over (A cells in the dense form, M union
slots in the windowed form), K top-k.

Given each target's masked cost over X (inf where a slot is not its candidate), its IoUs and the mode's rules:

* ``dynamic_ks``: each target's k from its top-10 candidate IoUs;
* ``select_cheapest``: each target's k cheapest candidates;
* ``Contest``: the contested-cell argmin and the ``Assignment`` over X, fed one chunk of targets at a time; with
  ``audit``, also each target's k, selected, won and kept-cell counts (``TargetCounts``, the per-target audit).

Tie rule (deterministic, the same on every backend, built into the selection rather than left to ``topk``):

* among a target's candidates with equal cost at its top-k boundary, the lower cell index is selected first;
* a contested cell whose best costs are equal goes to the lower target index (slot in the padded layout, which is
  the target's order of appearance within its image).

Selection of a target's k cheapest cells is "cost < t, plus the first (k - #below) cells with cost == t in cell
order", t being the k-th smallest cost taken from one ``topk`` with a constant K. ``topk``'s values are unique
whatever its index order, so the result does not depend on how a backend orders ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..assignment import Assignment
from ..config import CANDIDATE_TOPK, LossConfig
from .masks import count_true


def constant_k(k_max: int, width) -> int:
    """The top-k's K over an axis of ``width`` slots: min(k_max, width) when the width is a static int (the dense
    form's A), else ``k_max``: an exported graph's TopK needs a constant K (TensorRT's parser), and a symbolic width
    (the windowed form's M = G * W) is padded to at least ``CANDIDATE_TOPK`` slots (``window.window_cells``)."""
    return min(k_max, width) if isinstance(width, int) else k_max


def dynamic_ks(ious: Tensor, candidates: Tensor, config: LossConfig) -> Tensor:
    """int64 [B, G]: max(int(sum of the top-10 candidate IoUs [* the mode's bias]), 1). ious float [B, G, X];
    candidates bool [B, G, X]; with fewer than 10 candidates the non-candidates add 0, as the references'
    top-min(10, n)."""
    top = constant_k(CANDIDATE_TOPK, ious.shape[-1])
    total = ious.masked_fill(~candidates, 0.0).topk(top, dim=-1).values.sum(-1)  # [B, G]
    if config.ks_bias is not None:
        total = total * config.ks_bias
    return total.long().clamp(min=1)


def requested_ks(ks: Tensor, ranked: Tensor) -> Tensor:
    """int64 [B, G]: the k a target asks for, as the audit reports it: ``dynamic_ks``'s k where the target has
    anything ranked (``ranked`` bool [B, G]: a real slot with at least one candidate), else 0 (a masked or
    malformed slot, an image without any candidate cell, a fast-mode target without a candidate)."""
    return torch.where(ranked, ks, torch.zeros_like(ks))


def select_cheapest(masked_cost: Tensor, candidates: Tensor, k: Tensor, max_k: int,
                    cell_key: Tensor | None = None, with_ranked: bool = False):
    """bool [B, G, X]: each target's k cheapest candidates (all of them if it has fewer than k); equal costs at the
    boundary are taken in cell-index order.

    masked_cost float [B, G, X] (inf off the candidates); candidates bool [B, G, X]; k int64 [B, G], at most
    ``max_k``. ``cell_key`` float [B, X] gives each slot's cell index when the slots are not in cell order (the
    windowed form; distinct over a target's candidates); None when slot x is cell x (the dense form).
    ``with_ranked`` also returns whether each target has a candidate, bool [B, G], read off the top-k's cheapest
    value (a candidate's cost is finite, or NaN; a non-candidate's is inf): no further pass over [B, G, X].
    """
    top = constant_k(max_k, masked_cost.shape[-1])
    values = masked_cost.topk(top, dim=-1, largest=False, sorted=True).values  # [B, G, K]
    inf = torch.full_like(values[..., :1], float("inf"))
    values = torch.cat((values, inf), dim=-1)  # [B, G, K + 1]: k beyond K selects every candidate
    threshold = values.gather(-1, (k.clamp(max=top + 1) - 1).unsqueeze(-1))  # [B, G, 1]
    below = masked_cost < threshold  # [B, G, X]
    needed = k.unsqueeze(-1) - count_true(below, -1, keepdim=True)  # [B, G, 1], float32
    at_threshold = (masked_cost == threshold) & candidates  # [B, G, X]
    selected = below | (at_threshold & first_tied(at_threshold, needed, cell_key, top))
    return (selected, values[..., 0] != float("inf")) if with_ranked else selected


def first_tied(at_threshold: Tensor, needed: Tensor, cell_key: Tensor | None, top: int) -> Tensor:
    """bool [B, G, X]: among the tied slots ``at_threshold`` [B, G, X], those with the ``needed`` [B, G, 1] lowest
    cell indices (and possibly slots that are not tied; the caller ands with ``at_threshold``).

    In cell order, a tied slot's rank is the running count of tied slots (float32, exact below 2^24). Otherwise the
    needed-th lowest tied cell index comes from a second constant-K top-k over the tied slots' keys (needed <= K,
    since k <= K)."""
    if cell_key is None:
        return at_threshold.to(torch.float32).cumsum(-1) <= needed
    key = torch.where(at_threshold, cell_key.unsqueeze(1), float("inf"))  # [B, G, X]
    lowest = key.topk(top, dim=-1, largest=False, sorted=True).values  # [B, G, K]
    floor = torch.full_like(lowest[..., :1], float("-inf"))
    last = torch.cat((floor, lowest), -1).gather(-1, needed.clamp(0, top).long())  # [B, G, 1]
    return key <= last


#: Added to the position of every value that is not its axis's minimum in ``first_argmin``: 2^24, above any axis
#: length (positions below it are exact float32 integers), and a constant (an axis length would fix G on export).
NOT_MINIMUM = float(2**24)


def first_argmin(values: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """(min, index of its first occurrence) along ``dim``, lower index winning ties by construction.

    The index is the smallest ``position + 2^24 * (value is not the min)``: arithmetic rather than a masked fill,
    since onnxruntime's CPU Where is several times slower than an Add over the same [B, G, A] tensor
    (microsoft/onnxruntime#5896). A NaN counts as the minimum, as torch's ``amin`` propagates it: the index is then
    that of the first NaN (``value != value`` marks a NaN; any NaN makes the min NaN).
    """
    best = values.amin(dim, keepdim=True)
    positions = torch.arange(values.shape[dim], device=values.device, dtype=values.dtype)
    shape = [1] * values.dim()
    shape[dim] = -1
    at_min = (values == best) | (values != values)  # [B, G, X]
    away = (~at_min).to(values.dtype).mul_(NOT_MINIMUM)  # [B, G, X]: 0 at the minima, 2^24 elsewhere
    first = away.add_(positions.reshape(shape)).amin(dim)
    return best.squeeze(dim), first


@dataclass
class TargetCounts:
    """The per-target audit of one assignment, each int64 [B, G] (0 at masked slots): ``k`` (``requested_ks``),
    ``selected`` (cells among its k cheapest), ``cells`` (cells whose matched target it is, after the contest),
    ``won`` (cells it got without selecting them: a contested cell whose argmin over all targets it is, union
    modes only). The cells it selected and lost are ``selected - cells + won``."""

    k: Tensor
    selected: Tensor
    cells: Tensor
    won: Tensor

    @property
    def lost(self) -> Tensor:
        return self.selected - self.cells + self.won


def count_per_target(matched_gt: Tensor, offset: int, width) -> Tensor:
    """int64 [B, Gc]: for targets ``offset`` .. ``offset + width``, the number of slots of matched_gt [B, X] that
    name them: one comparison and one float32 count over [B, Gc, X] (exact below 2^24), no scatter."""
    targets = torch.arange(width, device=matched_gt.device).add_(offset).reshape(1, -1, 1)  # [1, Gc, 1]
    return count_true(matched_gt.unsqueeze(1) == targets, -1).long()


class Contest:
    """The contested-cell argmin and the ``Assignment`` over X, fed target chunk by target chunk (``add``), exactly.

    A cell selected by any target is foreground, matched to the cheapest contender with lower target index on equal
    costs, with that pair's IoU. Contenders are the targets that selected the cell; with ``union_candidates``
    (regular, megvii) every target of the image for a cell selected by several (the originals' argmin over all
    targets). Across chunks the state is per cell [B, X]: the selection count, and the running (min cost, first
    target, its IoU) over the selecting targets and, with ``union_candidates``, over all targets; a later chunk
    replaces the state only where its minimum is strictly lower, so the lower target index keeps equal costs, as
    one argmin over all targets would; a NaN cost (an overflowing IoU of a huge, unvalidated target) counts as the
    lowest, the first one kept, as in ``first_argmin``. Whatever the chunking, the result is the same, bit for bit.

    With ``audit`` the contest also keeps each chunk's k (``requested_ks``) and selection counts [B, Gc], and
    ``assignment`` adds the per-target audit (``Assignment.counts``, a ``TargetCounts``): the kept cells counted
    over X from the final matched target (one comparison and count per target chunk, [B, Gc, X]: the cells of the
    windowed form are its union slots, so the count is over M rather than A), and the won cells the same way over
    the cells whose winner did not select them. Integer counts, so also independent of the chunking.
    """

    def __init__(self, batch: int, width: int, config: LossConfig, device, audit: bool = False) -> None:
        inf = torch.full((batch, width), float("inf"), device=device)
        zero = torch.zeros((batch, width), dtype=torch.long, device=device)
        self.count = torch.zeros((batch, width), device=device)  # float32 counts (masks.count_true)
        self.selectors = [inf, zero, torch.zeros_like(inf)]  # (min cost, target, IoU) over the selecting targets
        self.everyone = [inf.clone(), zero.clone(), torch.zeros_like(inf)] if config.union_candidates else None
        self.audit = audit
        self.chunks: list[tuple[int, Tensor, Tensor]] = []  # (offset, k [B, Gc], selected count [B, Gc])

    def add(self, offset: int, masked_cost: Tensor, selected: Tensor, ious: Tensor, ks: Tensor | None = None,
            ranked: Tensor | None = None) -> None:
        """One chunk of targets (indices ``offset`` on): masked_cost [B, Gc, X] (inf off the candidates; spent),
        selected bool [B, Gc, X] (``select_cheapest``), ious [B, Gc, X]; for the audit, the chunk's k [B, Gc]
        (``dynamic_ks``) and ``ranked`` bool [B, Gc] (``requested_ks``)."""
        if self.audit:
            self.chunks.append((offset, requested_ks(ks, ranked), count_true(selected, -1).long()))
        self.count += count_true(selected, 1)
        if self.everyone is not None:
            _keep_lower(self.everyone, offset, masked_cost, ious)
        _keep_lower(self.selectors, offset, masked_cost.masked_fill_(~selected, float("inf")), ious)

    def assignment(self) -> Assignment:
        fg_mask = self.count > 0  # [B, X]
        _, winner, iou = self.selectors
        if self.everyone is not None:
            contested = self.count > 1
            winner = torch.where(contested, self.everyone[1], winner)
            iou = torch.where(contested, self.everyone[2], iou)
        matched_gt = winner.masked_fill(~fg_mask, -1)
        counts = self.target_counts(matched_gt) if self.audit else None
        return Assignment(fg_mask=fg_mask, matched_gt=matched_gt, matched_iou=iou.masked_fill(~fg_mask, 0.0),
                          counts=counts)

    def target_counts(self, matched_gt: Tensor) -> TargetCounts:
        """The chunks' audit, for the final matched_gt [B, X]: a cell won without selecting it is a contested one
        whose argmin over all targets is not its argmin over the selecting targets (the first minimum over all
        targets, when it selected the cell, is also the first minimum over the selecting ones)."""
        unselected = None
        if self.everyone is not None:
            unselected = (self.count > 1) & (self.everyone[1] != self.selectors[1])  # [B, X]
        parts = []
        for offset, ks, selected in self.chunks:
            width = ks.shape[1]
            cells = count_per_target(matched_gt, offset, width)
            won = (count_per_target(matched_gt.masked_fill(~unselected, -1), offset, width)
                   if unselected is not None else torch.zeros_like(cells))
            parts.append((ks, selected, cells, won))
        return TargetCounts(*(torch.cat(column, 1) for column in zip(*parts)))


def _keep_lower(state: list[Tensor], offset: int, costs: Tensor, ious: Tensor) -> None:
    """Update ``state`` = [min cost, first target, its IoU] (each [B, X]) with a chunk's costs [B, Gc, X]."""
    best, first = first_argmin(costs, dim=1)  # [B, X]
    first = first.long()
    lower = (best < state[0]) | ((best != best) & (state[0] == state[0]))  # a first NaN replaces a number
    state[0] = torch.where(lower, best, state[0])
    state[1] = torch.where(lower, first + offset, state[1])
    state[2] = torch.where(lower, ious.gather(1, first.unsqueeze(1)).squeeze(1), state[2])
