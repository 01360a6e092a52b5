"""One configuration object shared by the reference losses and the static module.

Both paths read the same fields, so a reference and the static module built from one ``LossConfig`` cannot drift
apart. Defaults are those of super-gradients' ``YoloXDetectionLoss`` / ``YoloXFastDetectionLoss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

MODES = ("regular", "fast")
IOU_TYPES = ("iou", "giou")

#: SimOTA cost weights, fixed in both references.
IOU_COST_WEIGHT = 3.0
OUTSIDE_COST = 100000.0
#: Epsilon of SimOTA's IoU cost, IOU_COST_WEIGHT * -log(iou + IOU_COST_EPS), in every reference and the static module.
IOU_COST_EPS = 1e-8
#: Top-k IoUs summed into the dynamic k.
CANDIDATE_TOPK = 10
#: Weight of the IoU loss term in the total loss.
REG_WEIGHT = 5.0
#: Names of the loss components, in the order of the components vector.
COMPONENT_NAMES = ("iou", "obj", "cls", "l1", "num_fg", "Loss")
#: Fast mode's centre radius, hard-coded in the fast reference whatever ``center_sampling_radius`` says.
FAST_CENTER_RADIUS = 2.5


@dataclass(frozen=True)
class LossConfig:
    """Hyper-parameters of the YOLOX loss.

    ``strides`` are the head levels' strides in pixels, in the order the levels are given. ``mode`` picks the
    assignment: "regular" (``YoloXDetectionLoss``) or "fast" (``YoloXFastDetectionLoss``). ``dynamic_ks_bias``,
    ``sync_num_fgs`` and ``obj_loss_fix`` only act in fast mode, as in the references.
    """

    strides: tuple[int, ...]
    num_classes: int
    mode: str = "regular"
    use_l1: bool = False
    center_sampling_radius: float = 2.5
    iou_type: str = "iou"
    dynamic_ks_bias: float = 1.1
    sync_num_fgs: bool = False
    obj_loss_fix: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "strides", _checked_strides(self.strides))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {self.num_classes!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {self.iou_type!r}")
        if not _is_positive_finite(self.center_sampling_radius):
            raise ValueError(f"center_sampling_radius must be a finite number > 0, got {self.center_sampling_radius!r}")
        if not _is_positive_finite(self.dynamic_ks_bias):
            raise ValueError(f"dynamic_ks_bias must be a finite number > 0, got {self.dynamic_ks_bias!r}")

    @property
    def center_radius(self) -> float:
        """Centre-sampling radius, in strides, that this mode's candidate test really uses."""
        return FAST_CENTER_RADIUS if self.mode == "fast" else float(self.center_sampling_radius)

    @property
    def max_dynamic_k(self) -> int:
        """Largest dynamic k the mode can produce: 10 (regular) or int(float32(10) * float32(bias)) (fast)."""
        if self.mode == "regular":
            return CANDIDATE_TOPK
        import torch

        bound = torch.tensor(float(CANDIDATE_TOPK)) * torch.tensor(float(self.dynamic_ks_bias))
        return max(1, int(bound.item()))


def _checked_strides(strides: Sequence[int]) -> tuple[int, ...]:
    try:
        values = tuple(strides)
    except TypeError:
        raise TypeError(f"strides must be a sequence of ints, got {strides!r}") from None
    if not values:
        raise ValueError("strides must not be empty")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
            raise ValueError(f"strides must be positive ints, got {strides!r}")
    return values


def _is_positive_finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
