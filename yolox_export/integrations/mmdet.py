"""Drop-in for mmdetection 3.3's ``YOLOXHead.loss_by_feat`` (and mmyolo's ``YOLOXHead``): the static mmdet-mode
loss (``StaticYoloXLoss(mode="mmdet")``) behind mmdetection's own calling convention, without importing
mmdetection, mmcv, mmengine or mmyolo.

mmdetection's head calls ``loss_by_feat(cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch_img_metas,
batch_gt_instances_ignore=None)`` with

* per level, in stride order: ``cls_scores`` [B, C, H, W] class logits, ``bbox_preds`` [B, 4, H, W] raw box outputs
  (dx, dy, dw, dh; decoded as mmdetection does: centre = d * s + col * s, size = exp(d) * s, then corners) and
  ``objectnesses`` [B, 1, H, W] logits. The levels must cover one image size (level 0's H * stride, as YOLOX's
  ``pad_size_divisor=32`` makes them); cells are taken row-major, levels in stride order, as mmdetection's
  ``permute(0, 2, 3, 1).reshape(B, -1, ...)`` flattens them;
* ``batch_gt_instances``: one object per image with ``.bboxes`` [n, 4] (x1, y1, x2, y2) in pixels (a tensor, or a
  box object holding one in ``.tensor``, as mmdetection's ``HorizontalBoxes``) and ``.labels`` [n] (int64); or, in
  mmyolo's form, one tensor [N, 6] of rows (image index, label, x1, y1, x2, y2) with float labels. Within an image
  the targets keep their order: ``Assignment.matched_gt`` is the index of the instance (or of the image's row);
* ``batch_img_metas``: one entry per image; only its length, the batch size, is read;
* ``batch_gt_instances_ignore``: None, or one entry (None or an object) per image. YOLOX does not use it
  (mmdetection's ``SimOTAAssigner`` accepts it and never reads it), and neither does this.

``MMDetLoss.loss_by_feat`` returns mmdetection's dict: ``loss_cls``, ``loss_bbox``, ``loss_obj`` and, with
``use_l1``, ``loss_l1`` (mmyolo: ``loss_bbox_aux``), float32 tensors with their gradients to the three input lists,
each divided by max(reduce_mean(num_pos), 1) (the batch's positive count averaged over the default process group
when one is initialised, then clamped) and scaled by its loss's ``loss_weight`` (``LossWeights``). The values are
the eager reference ``MMDetYoloXLoss``'s (bit for bit with ``max_gt=None``, to float32 rounding with a fixed
``max_gt``). When the batch has no positive, mmdetection keeps the class and box branches in the graph
(``sum() * 0``); here too, ``loss_cls`` gives every ``cls_scores`` level and ``loss_bbox`` (and the L1 term) every
``bbox_preds`` level an exact zero gradient, so a DDP bucket never waits for a missing one. Unlike mmdetection's
``flatten_bboxes.sum() * 0``, that zero is never NaN when a background cell's decoded box overflows.

Bad inputs raise ValueError (TypeError for a wrong type) naming the image, and the level where there is one: a box
with x2 < x1 or y2 < y1 or a non-finite coordinate, a label out of [0, C) or not a whole number, channel counts
other than (C, 4, 1), level counts that differ between the three lists or from the strides, batch sizes that differ
from ``len(batch_img_metas)``, a ``batch_gt_instances`` whose length is not the batch size, and (with ``validate``)
a non-finite head output. An image without targets, and a batch without any, are valid. ``validate=False`` skips
the value checks (the structure is always checked): a non-finite output or a malformed target then makes every
loss and gradient NaN, as in the static module.

An mmdetection (or mmyolo) user adds two lines after building the model::

    from yolox_export.integrations.mmdet import bind_to_head
    bind_to_head(model.bbox_head)

``bind_to_head`` reads the head's classes, strides, assigner and loss settings once (every setting is honoured or
refused with a ValueError that names it) and its L1 switch at every call (mmdetection's ``YOLOXModeSwitchHook``
turns it on after the model is built).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..assignment import Assignment
from ..box_format import CORNERS
from ..config import CANDIDATE_TOPK, CLS_COST_WEIGHT, IOU_COST_WEIGHT, REG_WEIGHT, LossConfig, check_flag
from ..grid import flatten_levels, image_size, level_shapes, make_grid
from ..static import padded_assign, padded_loss
from ..static.chunks import DEFAULT_MAX_MEMORY_MIB, Chunking
from ..static.padded import loss_form_for, poison_gradients
from ..targets import check_target_counts, checked_max_gt, pad_targets
from ..validation import (MMDET_WORDING, MisreadingWarnings, check_index_column, check_positive, check_rows,
                          first_nonfinite, is_finite_number)


@dataclass(frozen=True)
class LossWeights:
    """The ``loss_weight`` of the head's four losses; the defaults are mmdetection's YOLOX configuration
    (``loss_bbox`` 5.0, the others 1.0). ``loss_cls = cls * (class BCE sum) / num_total`` and so on."""

    cls: float = 1.0
    bbox: float = REG_WEIGHT
    obj: float = 1.0
    l1: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not is_finite_number(value):
                raise ValueError(f"loss weight {field.name} must be a finite number, got {value!r}")


class MMDetLoss(nn.Module):
    """mmdetection 3.3's YOLOX head loss (``loss_by_feat``) on the static mmdet-mode module; see the module
    docstring. An ``nn.Module`` without parameters: calling it is ``loss_by_feat``.

    ``use_l1`` may be switched at any time (it is read at each call). ``center_radius`` is ``SimOTAAssigner``'s;
    ``max_gt``, ``validate`` and ``max_memory_mib`` are ``StaticYoloXLoss``'s. ``l1_key`` names the L1 term in the
    dict (mmyolo calls it ``loss_bbox_aux``).
    """

    def __init__(self, num_classes: int, strides: Sequence[int] = (8, 16, 32), use_l1: bool = False,
                 center_radius: float = 2.5, max_gt: int | None = None, validate: bool = True,
                 max_memory_mib: float | None = DEFAULT_MAX_MEMORY_MIB, loss_weights: LossWeights = LossWeights(),
                 l1_key: str = "loss_l1"):
        super().__init__()
        self.config = LossConfig(tuple(strides), num_classes, mode="mmdet", use_l1=check_flag("use_l1", use_l1),
                                 center_sampling_radius=check_positive("center_radius", center_radius))
        self.max_gt = checked_max_gt(max_gt)
        self.validate = check_flag("validate", validate)
        self.chunking = Chunking(max_memory_mib)
        self.use_l1 = use_l1
        self._misreadings = MisreadingWarnings()
        if not isinstance(loss_weights, LossWeights):
            raise TypeError(f"loss_weights must be a LossWeights, got {type(loss_weights).__name__}")
        self.loss_weights = loss_weights
        if not isinstance(l1_key, str) or l1_key in ("loss_cls", "loss_bbox", "loss_obj"):
            raise ValueError(f"l1_key must be a string other than loss_cls, loss_bbox and loss_obj, got {l1_key!r}")
        self.l1_key = l1_key

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def strides(self) -> tuple[int, ...]:
        return self.config.strides

    def forward(self, cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch_img_metas,
                batch_gt_instances_ignore=None) -> dict[str, Tensor]:
        return self.loss_by_feat(cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch_img_metas,
                                 batch_gt_instances_ignore)

    def loss_by_feat(self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
                     objectnesses: Sequence[Tensor], batch_gt_instances, batch_img_metas: Sequence,
                     batch_gt_instances_ignore: Sequence | None = None) -> dict[str, Tensor]:
        """mmdetection's ``YOLOXHead.loss_by_feat``: the loss dict (see the module docstring)."""
        batch = batch_size_of(batch_img_metas)
        check_ignore_list(batch_gt_instances_ignore, batch)
        config = self._config()
        raw, gt, gt_mask, grid = self._padded_inputs(cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch)
        iou, obj, cls, l1 = padded_loss(raw, gt, gt_mask, grid, config, chunking=self.chunking,
                                        loss_form=loss_form_for(self.max_gt)).terms
        # exact zeros whose gradient reaches every level, as mmdetection's sum() * 0 without positives
        zero = torch.zeros((), dtype=obj.dtype, device=obj.device)
        cls_zero, box_zero = poison_gradients(zero, *cls_scores), poison_gradients(zero, *bbox_preds)
        weights = self.loss_weights
        losses = {"loss_cls": weights.cls * (cls + cls_zero), "loss_bbox": weights.bbox * (iou + box_zero),
                  "loss_obj": weights.obj * obj}
        if config.use_l1:
            losses[self.l1_key] = weights.l1 * (l1 + box_zero)
        return losses

    def assign(self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor], objectnesses: Sequence[Tensor],
               batch_gt_instances) -> Assignment:
        """The [B, A] ``Assignment`` that ``loss_by_feat`` computes for these inputs, cells in its order (levels in
        stride order, each row-major); B is the predictions' batch."""
        raw, gt, gt_mask, grid = self._padded_inputs(cls_scores, bbox_preds, objectnesses, batch_gt_instances, None)
        return padded_assign(raw, gt, gt_mask, grid, self.config, chunking=self.chunking)

    def audit(self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor], objectnesses: Sequence[Tensor],
              batch_gt_instances):
        """The per-target audit (``audit.TargetAudit``, docs/audit.md) of ``loss_by_feat``'s inputs: row i
        describes the i-th ground truth, image by image, each image's ``bboxes`` / ``labels`` in order."""
        from ..audit import static_audit

        levels = head_levels(cls_scores, bbox_preds, objectnesses, self.num_classes, self.strides, None,
                             self.validate)
        targets = gt_targets(batch_gt_instances, int(levels[0].shape[0]), self.num_classes, levels[0].device,
                             self.validate)
        return static_audit(levels, targets, self._config(), self.max_gt, self.chunking, self.validate)

    def _config(self) -> LossConfig:
        """The config, its ``use_l1`` following this module's."""
        use_l1 = check_flag("use_l1", self.use_l1)
        if self.config.use_l1 != use_l1:
            self.config = dataclasses.replace(self.config, use_l1=use_l1)
        return self.config

    def _padded_inputs(self, cls_scores, bbox_preds, objectnesses, batch_gt_instances, batch: int | None):
        """(raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G], grid) from mmdetection's inputs, validated (the
        structure always, the values with ``validate``). ``batch`` is the expected B (None: the head outputs')."""
        levels = head_levels(cls_scores, bbox_preds, objectnesses, self.num_classes, self.strides, batch,
                             self.validate)
        raw, shapes = flatten_levels(levels), level_shapes(levels)
        batch = raw.shape[0]
        targets = gt_targets(batch_gt_instances, batch, self.num_classes, raw.device, self.validate)
        if self.validate:
            self._misreadings.check(targets[:, 2:6], image_size(shapes, self.strides), self.config.box_format)
            if self.max_gt is not None:
                check_target_counts(targets, batch, self.max_gt)
        gt, gt_mask = pad_targets(targets, batch, self.max_gt, validate=False)
        return raw, gt, gt_mask, make_grid(shapes, self.strides, device=raw.device)


# ---------------------------------------------------------------------------------------------------------------
# inputs


def batch_size_of(batch_img_metas) -> int:
    """B: the number of image metas."""
    if isinstance(batch_img_metas, (Tensor, str, Mapping)) or not isinstance(batch_img_metas, Sequence):
        raise TypeError(f"batch_img_metas must be a sequence with one entry per image, got "
                        f"{type(batch_img_metas).__name__}")
    return len(batch_img_metas)


def check_ignore_list(batch_gt_instances_ignore, batch: int) -> None:
    """None, or one entry per image (each ignored, as in mmdetection's YOLOX)."""
    if batch_gt_instances_ignore is None:
        return
    if isinstance(batch_gt_instances_ignore, (Tensor, str)) or not isinstance(batch_gt_instances_ignore, Sequence):
        raise TypeError(f"batch_gt_instances_ignore must be None or a sequence with one entry per image, got "
                        f"{type(batch_gt_instances_ignore).__name__}")
    if len(batch_gt_instances_ignore) != batch:
        raise ValueError(f"batch_gt_instances_ignore has {len(batch_gt_instances_ignore)} entries for {batch} "
                         "images (batch_img_metas)")


#: The three head outputs' names, in the order of ``head_levels``' arguments.
OUTPUTS = ("cls_scores", "bbox_preds", "objectnesses")


def head_levels(cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor], objectnesses: Sequence[Tensor],
                num_classes: int, strides: Sequence[int], batch: int | None, validate: bool = True) -> list[Tensor]:
    """Per level [B, 1, H, W, 5 + C] (dx, dy, dw, dh, objectness, C class logits): each level's bbox [B, 4, H, W],
    obj [B, 1, H, W] and cls [B, C, H, W] concatenated on the channels and permuted, so that the gradient reaches
    the three lists. ``batch`` is the expected B (None: level 0's). ValueError naming the list and level for a
    wrong count of levels, channels or images, or (``validate``) a non-finite value."""
    lists = (cls_scores, bbox_preds, objectnesses)
    for name, given in zip(OUTPUTS, lists):
        if isinstance(given, Tensor) or not isinstance(given, Sequence):
            raise TypeError(f"{name} must be a sequence of per-level tensors, got {type(given).__name__}")
    counts = [len(given) for given in lists]
    if len(set(counts)) != 1 or counts[0] != len(strides):
        raise ValueError(f"got {counts[0]} cls_scores, {counts[1]} bbox_preds and {counts[2]} objectnesses levels "
                         f"for {len(strides)} strides {tuple(strides)}")
    if batch is None:
        batch = int(cls_scores[0].shape[0]) if isinstance(cls_scores[0], Tensor) else 0
    levels = []
    for level, outputs in enumerate(zip(*lists)):
        for name, output, channels in zip(OUTPUTS, outputs, (num_classes, 4, 1)):
            check_output(output, name, level, channels, batch, outputs[0])
            if validate:
                check_finite(output, name, level)
        cls, box, obj = outputs
        levels.append(torch.cat((box, obj, cls), dim=1).permute(0, 2, 3, 1).unsqueeze(1))  # [B, 1, H, W, 5 + C]
    return levels


def check_output(output, name: str, level: int, channels: int, batch: int, first) -> None:
    """One level of one head output: a floating [B, channels, H, W] tensor with the H, W and device of the level's
    cls_scores (``first``)."""
    where = f"{name}[{level}]"
    if not isinstance(output, Tensor):
        raise TypeError(f"{where} is a {type(output).__name__}, not a tensor")
    if not output.is_floating_point():
        raise TypeError(f"{where} has dtype {output.dtype}; a floating dtype is required")
    if output.dim() != 4 or output.shape[1] != channels:
        words = f"num_classes = {channels}" if name == "cls_scores" else channels
        raise ValueError(f"{where} has shape {tuple(output.shape)}; expected [B, {words}, H, W]")
    if output.shape[0] != batch:
        raise ValueError(f"{where} has {output.shape[0]} images; the batch has {batch} (batch_img_metas, or "
                         "cls_scores[0])")
    if output.shape[2:] != first.shape[2:] or output.device != first.device:
        raise ValueError(f"{where} is {tuple(output.shape[2:])} on {output.device}; cls_scores[{level}] is "
                         f"{tuple(first.shape[2:])} on {first.device}")


def check_finite(output: Tensor, name: str, level: int) -> None:
    """ValueError naming the image, channel and cell of the first non-finite value of output [B, K, H, W] (one
    read-only reduction when all is finite)."""
    index = first_nonfinite(output)
    if index is not None:
        image, channel, row, column = index
        raise ValueError(f"{name}[{level}] of image {image}: non-finite value {output[index].item()} at channel "
                         f"{channel}, row {row}, column {column} (validate=False skips this check; the loss is then "
                         "NaN)")


def gt_targets(batch_gt_instances, batch: int, num_classes: int, device, validate: bool = True) -> Tensor:
    """[N, 6] float32 rows (image, label, x1, y1, x2, y2) on ``device`` from either ground-truth form, each image's
    targets in their order; ValueError naming the image (and instance or row) for a malformed one."""
    if isinstance(batch_gt_instances, Tensor):
        return tensor_targets(batch_gt_instances, batch, num_classes, device, validate)
    if isinstance(batch_gt_instances, (str, Mapping)) or not isinstance(batch_gt_instances, Sequence):
        raise TypeError("batch_gt_instances must be a sequence of per-image instances (.bboxes, .labels) or a "
                        f"tensor [N, 6], got {type(batch_gt_instances).__name__}")
    if len(batch_gt_instances) != batch:
        raise ValueError(f"batch_gt_instances has {len(batch_gt_instances)} entries for {batch} images "
                         "(batch_img_metas)")
    blocks, owners = [], []
    for image, instances in enumerate(batch_gt_instances):
        boxes, labels = instance_fields(instances, image)
        index = torch.full((labels.shape[0], 1), float(image), dtype=torch.float64, device=device)
        blocks.append(torch.cat((index, labels.to(device, torch.float64).unsqueeze(1),
                                 boxes.to(device, torch.float64)), dim=1))  # [n, 6], the values as passed
        owners += [(image, k) for k in range(labels.shape[0])]
    targets = torch.cat(blocks) if blocks else torch.zeros((0, 6), dtype=torch.float64, device=device)
    if validate and targets.device.type != "meta":
        check_rows(targets[:, 1:].detach().cpu(), lambda i: f"batch_gt_instances[{owners[i][0]}] (image "
                   f"{owners[i][0]}), instance {owners[i][1]}", num_classes, CORNERS, MMDET_WORDING)
    return targets.float()


def instance_fields(instances, image: int) -> tuple[Tensor, Tensor]:
    """(bboxes [n, 4], labels [n]) of one image's instances; an image without instances may hold empty tensors of
    any shape."""
    where = f"batch_gt_instances[{image}] (image {image})"
    if not (hasattr(instances, "bboxes") and hasattr(instances, "labels")):
        raise TypeError(f"{where} is a {type(instances).__name__} without .bboxes and .labels")
    boxes, labels = instances.bboxes, instances.labels
    if not isinstance(boxes, Tensor) and isinstance(getattr(boxes, "tensor", None), Tensor):
        boxes = boxes.tensor  # mmdetection's box types (HorizontalBoxes) hold their [n, 4] tensor there
    if not isinstance(boxes, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(f"{where}: .bboxes and .labels must be tensors, got {type(boxes).__name__} and "
                        f"{type(labels).__name__}")
    if boxes.numel() == 0 and labels.numel() == 0:
        return boxes.new_zeros((0, 4)), labels.new_zeros((0,))
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: bboxes has shape {tuple(boxes.shape)}; expected [n, 4] (x1, y1, x2, y2)")
    if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"{where}: labels has shape {tuple(labels.shape)}; expected [{boxes.shape[0]}], one per box")
    if labels.is_complex() or boxes.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{where}: labels and bboxes must be real numbers, got {labels.dtype} and {boxes.dtype}")
    return boxes, labels


def tensor_targets(rows: Tensor, batch: int, num_classes: int, device, validate: bool = True) -> Tensor:
    """mmyolo's [N, 6] rows (image index, label, x1, y1, x2, y2), float32 on ``device``."""
    if rows.dim() != 2 or rows.shape[1] != 6:
        raise ValueError(f"batch_gt_instances as a tensor must be [N, 6] rows (image index, label, x1, y1, x2, y2), "
                         f"got shape {tuple(rows.shape)}")
    if rows.is_complex() or rows.dtype == torch.bool:
        raise TypeError(f"batch_gt_instances must hold real numbers, got {rows.dtype}")
    if validate and rows.shape[0] and rows.device.type != "meta":
        given = rows.detach().cpu().double()  # the values as passed
        check_index_column(given[:, 0], MMDET_WORDING.image_index, batch, "batch size",
                           lambda i: f"batch_gt_instances row {i}")
        check_rows(given[:, 1:], lambda i: f"batch_gt_instances row {i} (image {int(given[i, 0])})", num_classes,
                   CORNERS, MMDET_WORDING)
    return rows.to(device, torch.float32)


# ---------------------------------------------------------------------------------------------------------------
# binding to a head


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

    def __init__(self, head, loss: MMDetLoss, kind: HeadKind):
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
            "loss_weights": LossWeights(**weights)}


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
