"""The exported graph's interface, one definition for the exporter, the runners, parity and the benchmark.

Inputs: ``predictions`` float32 [B, A, 5 + C] (raw head outputs, levels flattened by :func:`flatten_levels`),
``targets`` float32 [B, G, 5] (class, cx, cy, w, h in pixels), ``target_mask`` bool [B, G]. Outputs: ``fg_mask``
bool [B, A], ``matched_gt`` int64 [B, A] (-1 background), ``matched_iou`` float32 [B, A], ``loss_components``
float32 [6] (``COMPONENT_NAMES``); with targets also ``cls_target`` [B, A, C], ``obj_target`` [B, A],
``reg_target`` [B, A, 4], ``l1_target`` [B, A, 4]. Shape legend: B batch, A cells, G padded targets, C classes.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ..grid import flatten_levels
from ..targets import pad_targets

INPUT_NAMES = ("predictions", "targets", "target_mask")
OUTPUT_NAMES = ("fg_mask", "matched_gt", "matched_iou", "loss_components")
TARGET_OUTPUT_NAMES = ("cls_target", "obj_target", "reg_target", "l1_target")


def graph_feeds(predictions: Sequence[Tensor], targets: Tensor, max_gt: int | None = None,
                validate: bool = True) -> dict[str, Tensor]:
    """The graph's inputs for per-level predictions [B, 1, H, W, 5 + C] and [N, 6] targets: predictions flattened
    to [B, A, 5 + C] float32, targets padded by ``pad_targets`` to G = ``max_gt``, or the largest per-image count
    (at least 1: one masked slot stands for "no targets")."""
    raw = flatten_levels(list(predictions)).float()
    gt, mask = pad_targets(targets, raw.shape[0], max_gt, validate=validate)
    return dict(zip(INPUT_NAMES, (raw, gt.float(), mask)))
