"""Parity of the per-target audit: a subject's k and counts against the reference's own, target by target, each
difference explained by a tie in the reference's own answer (``ties``) or counted as real.

Shape legend: N target rows, B batch, A cells, G padded targets. A target's audit (``AUDIT_FIELDS``) differs from
the reference's either because a tie was decided differently or for real. It is explained when

* its k agrees, or both ks lie in the range that float32 rounding of its top-10 IoU sum admits (``k_range``), and
* a tie touches it: one of its own selections is ambiguous, or a differing cell that a tie explains, or a cell
  whose contest is tied, was matched to it on either side; and
* no differing cell that a tie does not explain was matched to it on either side.

The subject's audit may hold only some fields: an exported graph outputs ``target_k`` and ``target_cells``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from ..assignment import Assignment
from ..audit.result import TargetAudit
from ..config import LossConfig
from ..grid import flatten_levels, level_shapes, make_grid
from ..targets import pad_targets, per_image_slots
from .report import ParityReport
from .ties import image_ties

#: The audit's fields parity compares.
AUDIT_FIELDS = ("k", "selected", "lost", "won", "cells")
#: Graph output -> the audit field it holds.
GRAPH_FIELDS = {"target_k": "k", "target_cells": "cells"}


def fields_of(audit: TargetAudit) -> dict[str, Tensor]:
    """{field: int64 [N]} of a full audit."""
    return {name: getattr(audit, name) for name in AUDIT_FIELDS}


def graph_fields(outputs: Mapping[str, Tensor], targets: Tensor, batch: int) -> dict[str, Tensor]:
    """{field: int64 [N]} of an exported graph's [B, G] audit outputs, at the slots of targets [N, 6] (every row a
    real, valid target: G is the batch's largest count, ``graph_feeds``)."""
    if not all(name in outputs for name in GRAPH_FIELDS):
        return {}
    image = targets[:, 0].long()
    slot, _ = per_image_slots(image, batch)
    return {field: torch.as_tensor(outputs[name]).cpu().long()[image, slot] for name, field in GRAPH_FIELDS.items()}


def record_audit(report: ParityReport, subject: str, predictions: Sequence[Tensor], targets: Tensor,
                 config: LossConfig, reference: TargetAudit, got: Mapping[str, Tensor], expected: Assignment,
                 assignment: Assignment, input_ulps: int = 0) -> None:
    """Add one batch to the (subject, "audit") row: count = targets, exact = targets whose every compared field
    equals the reference's, explained / real = the others (module docstring)."""
    if not got:
        return
    row = report.row(subject, "audit")
    differs = torch.zeros(len(reference), dtype=torch.bool)
    for name, values in got.items():
        differs |= values.cpu() != getattr(reference, name).cpu()
    explained = explained_rows(differs, predictions, targets, config, reference, got, expected, assignment,
                               input_ulps)
    row.count += len(reference)
    row.exact += int((~differs).sum())
    row.explained += int((differs & explained).sum())
    row.real += int((differs & ~explained).sum())


def explained_rows(differs: Tensor, predictions: Sequence[Tensor], targets: Tensor, config: LossConfig,
                   reference: TargetAudit, got: Mapping[str, Tensor], expected: Assignment, assignment: Assignment,
                   input_ulps: int = 0) -> Tensor:
    """bool [N]: the differing rows ``differs`` [N] that a tie in the reference's own answer explains."""
    explained = torch.zeros_like(differs)
    rows = differs.nonzero().flatten().tolist()
    if not rows:
        return explained
    raw = flatten_levels([p.detach() for p in predictions]).cpu()
    grid = make_grid(level_shapes(predictions), config.strides)
    gt, mask = pad_targets(targets.cpu(), raw.shape[0], box_format=config.box_format)
    ref, sub = expected, assignment
    cell_differs = (ref.fg_mask != sub.fg_mask) | (ref.fg_mask & sub.fg_mask & (ref.matched_gt != sub.matched_gt))
    slots = reference.slot.cpu()
    ties = {}
    for i in rows:
        b, s = int(reference.image[i]), int(slots[i])
        if b not in ties:
            ties[b] = image_ties(raw[b], gt[b][mask[b]], grid, config, input_ulps)
        facts = ties[b]
        k_ref, k_got = int(reference.k[i]), int(got.get("k", reference.k)[i])
        low, high = (int(v) for v in facts.k_range[s])
        k_ok = k_ref == k_got or (low <= min(k_ref, k_got) and max(k_ref, k_got) <= high)
        touches = (ref.matched_gt[b].cpu() == s) | (sub.matched_gt[b].cpu() == s)  # [A]
        tied_cells = facts.explained_cells & cell_differs[b].cpu()
        real_cells = cell_differs[b].cpu() & ~facts.explained_cells
        tie = bool(facts.ambiguous[s].any()) or bool((tied_cells & touches).any()) or bool(
            (facts.contest_tie & touches).any())
        explained[i] = k_ok and tie and not bool((real_cells & touches).any())
    return explained
