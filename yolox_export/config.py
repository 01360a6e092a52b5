"""One configuration object shared by the reference losses and the static module.

Both paths read the same fields, so a reference and the static module built from one ``LossConfig`` cannot drift
apart. Defaults are those of super-gradients' ``YoloXDetectionLoss`` / ``YoloXFastDetectionLoss``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import Tensor

from .box_format import BOX_FORMATS
from .boxes import PAIRWISE_IOU
from .validation import check_positive

IOU_TYPES = ("iou", "giou")

#: SimOTA cost weights, fixed in every reference (mmdetection's ``SimOTAAssigner`` defaults: iou_weight 3.0,
#: cls_weight 1.0).
IOU_COST_WEIGHT = 3.0
CLS_COST_WEIGHT = 1.0
OUTSIDE_COST = 100000.0
#: Megvii YOLOX's penalty on a cell outside a target's centre region (``float(1e6) * (~geometry_relation)``).
MEGVII_OUTSIDE_COST = 1000000.0
#: Epsilon of SimOTA's IoU cost, IOU_COST_WEIGHT * -log(iou + eps): super-gradients' and Megvii's.
IOU_COST_EPS = 1e-8
#: mmdetection's ``SimOTAAssigner`` EPS, the same cost's epsilon there.
MMDET_IOU_COST_EPS = 1e-7
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
class ModeRules:
    """What a mode's SimOTA does, as data: the one place that knows what a mode name means.

    The static assignment, the loss and the parity layer read these (through ``LossConfig``'s properties) and never
    compare a mode's name; a new mode is a new entry in ``MODE_RULES`` and a reference registered for it.

    * ``box_test``: a candidate is a cell inside the target's box OR its centre region (True), or inside its centre
      region only (False, megvii). The penalised "strong" test is then box AND centre, or the centre test alone.
    * ``centre_by_parts``: the cell centre is ``x * s + 0.5 * s`` (True, regular) rather than ``(x + 0.5) * s``.
    * ``reach_from_cell``: the centre test is written ``x_c + r > cx`` and ``cx > x_c - r`` (True, fast) rather than
      ``x_c > cx - r`` and ``cx + r > x_c``; the signs agree, the roundings do not.
    * ``fixed_radius``: the centre radius in strides that the mode hard-codes, or None to use
      ``center_sampling_radius``.
    * ``box_format``: what a target row's box columns and the decoded boxes are (``box_format.BOX_FORMATS``):
      "cxcywh" (super-gradients, Megvii) or "xyxy" (mmdetection), end to end.
    * ``pairwise_iou``: the assignment's IoU formula (``PAIRWISE_IOU``): "regular" (``boxes.regular_pairwise_iou``,
      union + 1e-9, clamped sides), "fast" (``boxes.fast_pairwise_iou``, no epsilon, a ``tl < br`` mask) or
      "mmdet" (``boxes.mmdet_pairwise_iou``, corners, union clamped at 1e-6).
    * ``iou_cost_eps``: the epsilon in the IoU cost ``3 * -log(iou + eps)``.
    * ``iou_types``: the IoU losses the mode has (``LossConfig.iou_type``).
    * ``outside_cost``: the cost added where the strong test fails.
    * ``union_candidates``: every target is scored on the image's union of candidates and a contested cell goes to
      the argmin over all the image's targets (True), or each target keeps its own candidates and a contested cell
      goes to the cheapest of the targets that selected it (False).
    * ``biased_k``: the dynamic k is scaled by ``dynamic_ks_bias`` before truncation (fast; ``LossConfig.ks_bias``).
    * ``windowed``: the static assignment runs on each target's window of cells (``static.window``; possible because
      the centre-only candidates lie in a 3x3 block per level) rather than densely over [B, G, A].
    * ``loss_options``: ``obj_loss_fix`` and ``sync_num_fgs`` act (fast); elsewhere they are ignored, as in the
      references.
    * ``positives_over_ranks``: the batch's positive count is always averaged over the default process group
      (when one is initialised) before it is clamped at 1 (mmdetection's ``max(reduce_mean(num_pos), 1)``).
    """

    box_format: str
    box_test: bool
    centre_by_parts: bool
    reach_from_cell: bool
    fixed_radius: float | None
    pairwise_iou: str
    iou_cost_eps: float
    iou_types: tuple[str, ...]
    outside_cost: float
    union_candidates: bool
    biased_k: bool
    windowed: bool
    loss_options: bool
    positives_over_ranks: bool

    def __post_init__(self) -> None:
        if self.windowed and (self.box_test or self.centre_by_parts or self.reach_from_cell
                              or self.box_format != "cxcywh"):
            raise ValueError("the windowed assignment implements centre-only candidates of (cx, cy, w, h) targets "
                             "with the centre written (x + 0.5) * s and the test x_c > cx - r: box_test, "
                             "centre_by_parts and reach_from_cell must be False and box_format 'cxcywh'")
        if self.pairwise_iou not in PAIRWISE_IOU_NAMES:
            raise ValueError(f"pairwise_iou must be one of {PAIRWISE_IOU_NAMES}, got {self.pairwise_iou!r}")
        if not set(self.iou_types) <= set(IOU_TYPES):
            raise ValueError(f"iou_types must be among {IOU_TYPES}, got {self.iou_types!r}")


#: The IoU formulas that ``ModeRules.pairwise_iou`` can name (``boxes.PAIRWISE_IOU``).
PAIRWISE_IOU_NAMES = tuple(PAIRWISE_IOU)

#: The modes: regular (``YoloXDetectionLoss``), fast (``YoloXFastDetectionLoss``), megvii (``YOLOXHead.get_losses``),
#: mmdet (mmdetection 3.3's ``YOLOXHead.loss_by_feat`` with ``SimOTAAssigner``).
MODE_RULES = {
    "regular": ModeRules(box_format="cxcywh", box_test=True, centre_by_parts=True, reach_from_cell=False,
                         fixed_radius=None, pairwise_iou="regular", iou_cost_eps=IOU_COST_EPS, iou_types=IOU_TYPES,
                         outside_cost=OUTSIDE_COST, union_candidates=True, biased_k=False, windowed=False,
                         loss_options=False, positives_over_ranks=False),
    "fast": ModeRules(box_format="cxcywh", box_test=True, centre_by_parts=False, reach_from_cell=True,
                      fixed_radius=FAST_CENTER_RADIUS, pairwise_iou="fast", iou_cost_eps=IOU_COST_EPS,
                      iou_types=IOU_TYPES, outside_cost=OUTSIDE_COST, union_candidates=False, biased_k=True,
                      windowed=False, loss_options=True, positives_over_ranks=False),
    "megvii": ModeRules(box_format="cxcywh", box_test=False, centre_by_parts=False, reach_from_cell=False,
                        fixed_radius=MEGVII_CENTER_RADIUS, pairwise_iou="fast", iou_cost_eps=IOU_COST_EPS,
                        iou_types=IOU_TYPES, outside_cost=MEGVII_OUTSIDE_COST, union_candidates=True,
                        biased_k=False, windowed=True, loss_options=False, positives_over_ranks=False),
    "mmdet": ModeRules(box_format="xyxy", box_test=True, centre_by_parts=True, reach_from_cell=False,
                       fixed_radius=None, pairwise_iou="mmdet", iou_cost_eps=MMDET_IOU_COST_EPS, iou_types=("iou",),
                       outside_cost=OUTSIDE_COST, union_candidates=True, biased_k=False, windowed=False,
                       loss_options=False, positives_over_ranks=True),
}
MODES = tuple(MODE_RULES)


@dataclass(frozen=True)
class LossConfig:
    """Hyper-parameters of the YOLOX loss.

    ``strides`` are the head levels' strides in pixels, in the order the levels are given. ``mode`` picks the
    assignment: "regular" (``YoloXDetectionLoss``), "fast" (``YoloXFastDetectionLoss``), "megvii" (Megvii YOLOX's
    ``YOLOXHead.get_losses``) or "mmdet" (mmdetection's ``YOLOXHead.loss_by_feat``; its targets are (x1, y1, x2, y2)
    boxes, ``box_format``). ``dynamic_ks_bias``, ``sync_num_fgs`` and ``obj_loss_fix`` only act in fast mode, as in
    the references; megvii mode ignores ``center_sampling_radius`` (its radius is 1.5) and has no bias; mmdet mode
    has the IoU loss "iou" only (mmdetection's ``IoULoss(mode="square")``) and always averages its positive count
    over the default process group, as mmdetection does.
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
    rules: ModeRules = field(init=False, repr=False, compare=False)  # MODE_RULES[mode], set from ``mode``

    def __post_init__(self) -> None:
        object.__setattr__(self, "strides", _checked_strides(self.strides))
        for name in ("use_l1", "sync_num_fgs", "obj_loss_fix"):
            check_flag(name, getattr(self, name))
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {self.num_classes!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        # the mode's rules (``MODE_RULES``), an attribute rather than a field: read on every call of the assignment
        object.__setattr__(self, "rules", MODE_RULES[self.mode])
        if self.iou_type not in self.rules.iou_types:
            raise ValueError(f"iou_type must be one of {self.rules.iou_types} in {self.mode} mode, got "
                             f"{self.iou_type!r}")
        check_positive("center_sampling_radius", self.center_sampling_radius)
        check_positive("dynamic_ks_bias", self.dynamic_ks_bias)

    @property
    def center_radius(self) -> float:
        """Centre-sampling radius, in strides, that this mode's candidate test really uses."""
        fixed = self.rules.fixed_radius
        return float(self.center_sampling_radius) if fixed is None else fixed

    @property
    def box_format(self):
        """The ``box_format.BoxFormat`` of the mode's targets and decoded boxes."""
        return BOX_FORMATS[self.rules.box_format]

    @property
    def pairwise_iou(self) -> Callable[..., Tensor]:
        """The assignment's IoU formula (``boxes.PAIRWISE_IOU``): target components first, then the prediction's."""
        return PAIRWISE_IOU[self.rules.pairwise_iou]

    @property
    def iou_cost_eps(self) -> float:
        """The epsilon of the IoU cost, 3 * -log(iou + eps): 1e-8, or mmdetection's 1e-7."""
        return self.rules.iou_cost_eps

    @property
    def outside_cost(self) -> float:
        """Cost penalty of a candidate that fails the mode's strong test: 1e5 (regular, fast) or 1e6 (megvii)."""
        return self.rules.outside_cost

    @property
    def union_candidates(self) -> bool:
        """True when every target is scored on the image's union of candidate cells and a contested cell goes to the
        argmin over all the image's targets (regular, megvii); False when each target keeps its own (fast)."""
        return self.rules.union_candidates

    @property
    def ks_bias(self) -> float | None:
        """The factor on the top-10 IoU sum before the dynamic k is truncated (fast: ``dynamic_ks_bias``), or None."""
        return float(self.dynamic_ks_bias) if self.rules.biased_k else None

    @property
    def obj_over_all_cells(self) -> bool:
        """Whether the objectness term is divided by the number of cells B * A instead of num_fg (fast's
        ``obj_loss_fix``)."""
        return self.rules.loss_options and self.obj_loss_fix

    @property
    def averages_num_fg(self) -> bool:
        """Whether num_fg is averaged over the default process group when one is initialised (fast's
        ``sync_num_fgs``, mmdet always; eager only; ``distributed.batch_num_fg``)."""
        return (self.rules.loss_options and self.sync_num_fgs) or self.rules.positives_over_ranks

    @property
    def max_dynamic_k(self) -> int:
        """Largest dynamic k the mode can produce: 10 without a bias, int(float32(10) * float32(bias)) with one."""
        if self.ks_bias is None:
            return CANDIDATE_TOPK
        # the float32 product, in Python (no tensor read back): a product of two float32 values is exact in float64,
        # so rounding it once to float32 gives the float32 multiplication's result
        return max(1, int(_float32(_float32(float(CANDIDATE_TOPK)) * _float32(self.ks_bias))))


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
