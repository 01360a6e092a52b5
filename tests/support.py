"""Shared test helpers (``from support import ...``): what several test modules need beyond fixtures."""

from __future__ import annotations

import torch

from yolox_export.assignment import Assignment
from yolox_export.config import LossConfig
from yolox_export.parity.comparison import tie_explained_cells


def agrees_up_to_ties(got: Assignment, want: Assignment, predictions, targets: torch.Tensor,
                      config: LossConfig) -> bool:
    """Compare two arithmetics' assignments (``got``, e.g. the static module's, against ``want``, the reference's)
    as parity does: True when they agree cell for cell; otherwise every differing cell must be explained by a tie in
    the reference's own answer (``parity.ties``; AssertionError if not), and False says the losses legitimately
    differ. A float32 near-tie may resolve differently on another CPU (AVX2 / AVX-512), so such tests never rely on
    the last ulp of either arithmetic."""
    differs = (got.fg_mask != want.fg_mask) | (got.matched_gt != want.matched_gt)  # [B, A]
    if not bool(differs.any()):
        return True
    explained = tie_explained_cells(differs, predictions, targets, config)
    unexplained = int((differs & ~explained).sum())
    assert unexplained == 0, f"{unexplained} of {int(differs.sum())} differing cells are not explained by a tie"
    return False
