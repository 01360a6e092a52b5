"""One configuration object shared by the reference losses and the static module.

Both paths read the same fields, so a reference and the static module built from one ``LossConfig`` cannot drift
apart. Defaults are those of super-gradients' ``YoloXDetectionLoss`` / ``YoloXFastDetectionLoss``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Sequence

MODES = ("regular", "fast", "megvii")
IOU_TYPES = ("iou", "giou")

#: SimOTA cost weights, fixed in both references.
IOU_COST_WEIGHT = 3.0
OUTSIDE_COST = 100000.0
#: Megvii YOLOX's penalty on a cell outside a target's centre region (``float(1e6) * (~geometry_relation)``).
MEGVII_OUTSIDE_COST = 1000000.0
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
#: Megvii mode's centre radius, hard-coded in Megvii's ``get_geometry_constraint``.
MEGVII_CENTER_RADIUS = 1.5


@dataclass(frozen=True)
class LossConfig:
    """Hyper-parameters of the YOLOX loss.

    ``strides`` are the head levels' strides in pixels, in the order the levels are given. ``mode`` picks the
    assignment: "regular" (``YoloXDetectionLoss``), "fast" (``YoloXFastDetectionLoss``) or "megvii" (Megvii YOLOX's
    ``YOLOXHead.get_losses``). ``dynamic_ks_bias``, ``sync_num_fgs`` and ``obj_loss_fix`` only act in fast mode, as in
    the references; megvii mode ignores ``center_sampling_radius`` (its radius is 1.5) and has no bias.
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
        for name in ("use_l1", "sync_num_fgs", "obj_loss_fix"):
            check_flag(name, getattr(self, name))
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
        if self.mode == "fast":
            return FAST_CENTER_RADIUS
        if self.mode == "megvii":
            return MEGVII_CENTER_RADIUS
        return float(self.center_sampling_radius)

    @property
    def outside_cost(self) -> float:
        """Cost penalty of a candidate that fails the mode's strong test: 1e5 (regular, fast) or 1e6 (megvii)."""
        return MEGVII_OUTSIDE_COST if self.mode == "megvii" else OUTSIDE_COST

    @property
    def union_candidates(self) -> bool:
        """True when every target is scored on the image's union of candidate cells and a contested cell goes to the
        argmin over all the image's targets (regular, megvii); False when each target keeps its own (fast)."""
        return self.mode in ("regular", "megvii")

    @property
    def max_dynamic_k(self) -> int:
        """Largest dynamic k the mode can produce: 10 (regular, megvii) or int(float32(10) * float32(bias)) (fast)."""
        if self.mode in ("regular", "megvii"):
            return CANDIDATE_TOPK
        # the float32 product, in Python (no tensor read back): a product of two float32 values is exact in float64,
        # so rounding it once to float32 gives the float32 multiplication's result
        return max(1, int(_float32(_float32(float(CANDIDATE_TOPK)) * _float32(float(self.dynamic_ks_bias)))))


def _float32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is a bool; TypeError otherwise (``"False"`` or 0 would otherwise read as a truth value)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__})")
    return value


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
