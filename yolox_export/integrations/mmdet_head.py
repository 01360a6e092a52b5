"""Binding ``MMDetLoss`` to an mmdetection 3.x or mmyolo ``YOLOXHead``: ``bind_to_head`` reads the head's classes,
strides, assigner and loss settings once (each honoured, or refused with a ValueError naming it) and its L1 switch
at every call. Duck-typed: mmdetection, mmcv, mmengine and mmyolo are never imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from ..config import CANDIDATE_TOPK, CLS_COST_WEIGHT, IOU_COST_WEIGHT, check_flag
from ..validation import is_finite_number

if TYPE_CHECKING:
    from .mmdet import MMDetLoss


@dataclass(frozen=True)
class HeadKind:
    """Where a head keeps its L1 switch and loss, and the dict key of the L1 term."""

    name: str
    l1_flag: str
    l1_loss: str
    l1_key: str


MMDET_HEAD = HeadKind("mmdetection", "use_l1", "loss_l1", "loss_l1")
MMYOLO_HEAD = HeadKind("mmyolo", "use_bbox_aux", "loss_bbox_aux", "loss_bbox_aux")

#: mmdetection's constructor defaults of the settings read from a head: what an absent attribute or config key is.
CLASS_DEFAULTS = {
    "CrossEntropyLoss": {"use_sigmoid": False, "use_mask": False, "reduction": "mean", "class_weight": None,
                         "ignore_index": None, "loss_weight": 1.0},
    "IoULoss": {"linear": False, "eps": 1e-6, "reduction": "mean", "loss_weight": 1.0, "mode": "log"},
    "L1Loss": {"reduction": "mean", "loss_weight": 1.0},
    "SimOTAAssigner": {"center_radius": 2.5, "candidate_topk": CANDIDATE_TOPK, "iou_weight": IOU_COST_WEIGHT,
                       "cls_weight": CLS_COST_WEIGHT, "iou_calculator": {"type": "BboxOverlaps2D"}},
    "BboxOverlaps2D": {"dtype": None},
    "MlvlPointGenerator": {"offset": 0.5},
}
#: The settings the drop-in implements, per loss class. ``loss_weight`` is honoured whatever it is; the settings not
#: listed act only where these exclude them (CrossEntropyLoss's ``avg_non_ignore`` with reduction 'mean';
#: BboxOverlaps2D's ``scale`` with dtype 'fp16'); ``loss_weight()`` checks ``ignore_index`` on its own.
REQUIRED = {
    "CrossEntropyLoss": {"use_sigmoid": True, "use_mask": False, "reduction": "sum", "class_weight": None},
    "IoULoss": {"linear": False, "mode": "square", "eps": 1e-16, "reduction": "sum"},
    "L1Loss": {"reduction": "sum"},
}
#: YOLOXHead's loss configuration, for a head without the attribute.
HEAD_DEFAULTS = {
    "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": True, "reduction": "sum", "loss_weight": 1.0},
    "loss_bbox": {"type": "IoULoss", "mode": "square", "eps": 1e-16, "reduction": "sum", "loss_weight": 5.0},
    "loss_obj": {"type": "CrossEntropyLoss", "use_sigmoid": True, "reduction": "sum", "loss_weight": 1.0},
    "l1": {"type": "L1Loss", "reduction": "sum", "loss_weight": 1.0},
}
#: Options of ``bind_to_head``: those of ``MMDetLoss`` that a head does not configure.
BIND_OPTIONS = ("max_gt", "validate", "max_memory_mib")


class BoundLossByFeat:
    """What ``bind_to_head`` sets as ``head.loss_by_feat``: ``loss`` (an ``MMDetLoss``) with its ``use_l1`` read
    from the head's L1 switch at each call. ``del head.loss_by_feat`` restores the head's own method."""

    def __init__(self, head, loss: "MMDetLoss", kind: HeadKind):
        self.head, self.loss, self.kind = head, loss, kind

    def __call__(self, cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch_img_metas,
                 batch_gt_instances_ignore=None) -> dict[str, Tensor]:
        self.loss.use_l1 = getattr(self.head, self.kind.l1_flag)
        return self.loss.loss_by_feat(cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch_img_metas,
                                      batch_gt_instances_ignore)


def bind_to_head(head, **options):
    """Make ``head.loss_by_feat`` (an instance attribute shadowing the method) run ``MMDetLoss``, never the head's
    own assigner; returns the head.

    ``head`` is an mmdetection 3.x ``YOLOXHead`` (L1 switch ``use_l1``, loss ``loss_l1``, dict key ``loss_l1``)
    or an mmyolo ``YOLOXHead`` (``use_bbox_aux``, ``loss_bbox_aux``, key ``loss_bbox_aux``; it hands the ground
    truths over as one [N, 6] tensor), told apart by which switch it has, or anything with the same attributes.
    Read once (``head_settings``): ``num_classes``; the strides from ``strides``, ``prior_generator.strides``
    (pairs such as (8, 8)) and mmyolo's ``featmap_strides``, which must agree; the assigner (``assigner``, else
    ``train_cfg['assigner']``); the four losses; mmyolo's ``bbox_coder``. Read at each call: the L1 switch.
    ``options`` are ``MMDetLoss``'s ``max_gt``, ``validate`` and ``max_memory_mib``.
    """
    unknown = sorted(set(options) - set(BIND_OPTIONS))
    if unknown:
        raise TypeError(f"bind_to_head takes the options {BIND_OPTIONS}; {unknown} come from the head itself")
    kind = head_kind(head)
    settings = head_settings(head, kind)
    from .mmdet import MMDetLoss  # mmdet re-exports this module's bind_to_head: imported when called

    loss = MMDetLoss(settings["num_classes"], settings["strides"], use_l1=check_flag(
        f"head.{kind.l1_flag}", getattr(head, kind.l1_flag)), center_radius=settings["center_radius"],
        loss_weights=settings["loss_weights"], l1_key=kind.l1_key, **options)
    head.loss_by_feat = BoundLossByFeat(head, loss, kind)
    return head


def head_kind(head) -> HeadKind:
    """mmdetection's head (``use_l1``) or mmyolo's (``use_bbox_aux``)."""
    has_l1, has_aux = hasattr(head, MMDET_HEAD.l1_flag), hasattr(head, MMYOLO_HEAD.l1_flag)
    if has_l1 == has_aux:
        raise ValueError("the head must have exactly one L1 switch, use_l1 (mmdetection's YOLOXHead) or "
                         f"use_bbox_aux (mmyolo's), got {'both' if has_l1 else 'neither'}")
    return MMDET_HEAD if has_l1 else MMYOLO_HEAD


def head_settings(head, kind: HeadKind = MMDET_HEAD) -> dict:
    """``num_classes``, ``strides``, ``center_radius`` and ``loss_weights`` from a head; ValueError naming any
    setting that the drop-in does not implement (an absent one takes mmdetection's default)."""
    num_classes = getattr(head, "num_classes", None)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"head.num_classes must be an int >= 1, got {num_classes!r}")
    channels = getattr(head, "cls_out_channels", num_classes)
    if channels != num_classes:
        raise ValueError(f"head.cls_out_channels is {channels!r} but head.num_classes is {num_classes}")
    coder = getattr(head, "bbox_coder", None)
    if coder is not None and type_name(coder) != "YOLOXBBoxCoder":
        raise ValueError(f"head.bbox_coder is a {type_name(coder)}; the drop-in decodes as YOLOXBBoxCoder only")
    weights = {}
    for role, attribute, expected in (("cls", "loss_cls", "CrossEntropyLoss"), ("bbox", "loss_bbox", "IoULoss"),
                                      ("obj", "loss_obj", "CrossEntropyLoss"), ("l1", kind.l1_loss, "L1Loss")):
        config = getattr(head, attribute, None)
        weights[role] = loss_weight(HEAD_DEFAULTS["l1" if role == "l1" else attribute] if config is None else config,
                                    f"head.{attribute}", expected)
    return {"num_classes": num_classes, "strides": head_strides(head), "center_radius": assigner_radius(head),
            "loss_weights": _loss_weights(weights)}


def loss_weight(config, where: str, expected: str) -> float:
    """The ``loss_weight`` of one of the head's losses (a built module or its config dict), after checking that
    its class is ``expected`` and its other settings are the ones implemented (``REQUIRED``)."""
    name = type_name(config)
    if name != expected:
        raise ValueError(f"{where} is a {name or 'config without a type'}; the drop-in implements {expected} there")
    for setting, value in REQUIRED[name].items():
        given = setting_of(config, setting, name)
        if given != value:
            raise ValueError(f"{where}.{setting} is {given!r}; the drop-in implements {value!r} only")
    if name == "CrossEntropyLoss":
        ignore = setting_of(config, "ignore_index", name)  # acts only where a target equals it: targets are in [0, 1]
        if ignore is not None and (not is_finite_number(ignore) or 0 <= ignore <= 1):
            raise ValueError(f"{where}.ignore_index is {ignore!r}; the drop-in implements None (or an index outside "
                             "[0, 1], which no YOLOX target equals)")
    weight = setting_of(config, "loss_weight", name)
    if not is_finite_number(weight):
        raise ValueError(f"{where}.loss_weight must be a finite number, got {weight!r}")
    return float(weight)


def assigner_radius(head) -> float:
    """The centre radius of the head's ``SimOTAAssigner`` (``head.assigner``, else ``head.train_cfg['assigner']``,
    else the default 2.5); ValueError for another assigner or weights, top-k or IoU calculator than mmdetection's
    defaults."""
    assigner, where = getattr(head, "assigner", None), "head.assigner"
    train_cfg = getattr(head, "train_cfg", None)
    if assigner is None and train_cfg:
        assigner, where = item_of(train_cfg, "assigner"), "head.train_cfg['assigner']"
    if assigner is None:
        return CLASS_DEFAULTS["SimOTAAssigner"]["center_radius"]
    name = type_name(assigner)
    if name != "SimOTAAssigner":
        raise ValueError(f"{where} is a {name or 'config without a type'}; the drop-in implements SimOTAAssigner")
    for setting in ("candidate_topk", "iou_weight", "cls_weight"):
        given, value = setting_of(assigner, setting, name), CLASS_DEFAULTS[name][setting]
        if given != value:
            raise ValueError(f"{where}.{setting} is {given!r}; the drop-in implements {value!r} only")
    calculator = setting_of(assigner, "iou_calculator", name)
    if type_name(calculator) != "BboxOverlaps2D":
        raise ValueError(f"{where}.iou_calculator is a {type_name(calculator) or 'config without a type'}; the "
                         "drop-in implements BboxOverlaps2D")
    dtype = setting_of(calculator, "dtype", "BboxOverlaps2D")
    if dtype is not None:
        raise ValueError(f"{where}.iou_calculator.dtype is {dtype!r}; the drop-in computes IoUs in float32 (None)")
    radius = setting_of(assigner, "center_radius", name)
    if not is_finite_number(radius) or radius <= 0:
        raise ValueError(f"{where}.center_radius must be a finite number > 0, got {radius!r}")
    return float(radius)


def head_strides(head) -> tuple[int, ...]:
    """The strides a head's priors use: ``head.strides``, ``head.prior_generator.strides`` (an
    ``MlvlPointGenerator`` with offset 0) and ``head.featmap_strides``, those present agreeing."""
    generator = getattr(head, "prior_generator", None)
    if generator is not None:
        if type_name(generator) != "MlvlPointGenerator":
            raise ValueError(f"head.prior_generator is a {type_name(generator)}; the drop-in implements "
                             "MlvlPointGenerator")
        offset = setting_of(generator, "offset", "MlvlPointGenerator")
        if offset != 0:
            raise ValueError(f"head.prior_generator.offset is {offset!r}; YOLOX's priors have offset 0")
    found = {}
    for where, owner, attribute in (("head.strides", head, "strides"),
                                    ("head.prior_generator.strides", generator, "strides"),
                                    ("head.featmap_strides", head, "featmap_strides")):
        strides = getattr(owner, attribute, None) if owner is not None else None
        if strides is not None:
            found[where] = square_strides(strides, where)
    if not found:
        raise ValueError("the head has no strides, prior_generator.strides or featmap_strides")
    if len(set(found.values())) > 1:
        raise ValueError(f"the head's strides disagree: {found}")
    return next(iter(found.values()))


def square_strides(strides, where: str) -> tuple[int, ...]:
    """Strides given as ints or (w, h) pairs (numbers or tensors), as ints; ValueError for an unequal pair or a
    non-integer."""
    if isinstance(strides, Tensor):
        strides = strides.tolist()
    values = []
    for level, stride in enumerate(strides):
        if isinstance(stride, Tensor):  # a tensor pair or scalar, as a generator may hold them
            stride = stride.tolist()
        pair = tuple(stride) if isinstance(stride, Sequence) else (stride, stride)
        if len(pair) != 2 or pair[0] != pair[1]:
            raise ValueError(f"{where}[{level}] is {stride!r}; the drop-in implements square strides (s, s) only")
        if not is_finite_number(pair[0]) or pair[0] != int(pair[0]) or pair[0] < 1:
            raise ValueError(f"{where}[{level}] is {stride!r}; a stride must be a whole number >= 1")
        values.append(int(pair[0]))
    return tuple(values)


def type_name(config) -> str:
    """The class name of a built object, or of a config dict's ``type`` (a class, or a name with or without a
    registry scope such as 'mmdet.'); '' for a dict without one."""
    if not isinstance(config, Mapping):
        return type(config).__name__
    kind = config.get("type")
    if isinstance(kind, type):
        return kind.__name__
    return kind.rsplit(".", 1)[-1] if isinstance(kind, str) else ""


def setting_of(config, setting: str, class_name: str):
    """A setting of a built object (attribute) or config dict (key); mmdetection's default when absent."""
    default = CLASS_DEFAULTS[class_name][setting]
    if isinstance(config, Mapping):
        return config.get(setting, default)
    return getattr(config, setting, default)


def item_of(config, key: str):
    """``config[key]`` of a dict, or its attribute, or None."""
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def _loss_weights(weights: dict):
    """``mmdet.LossWeights`` of the four losses' weights (imported when called: ``mmdet`` re-exports this module)."""
    from .mmdet import LossWeights

    return LossWeights(**weights)
