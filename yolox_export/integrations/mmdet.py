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
turns it on after the model is built); it lives in ``mmdet_head`` and is re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..assignment import Assignment
from ..box_format import CORNERS
from ..config import REG_WEIGHT, LossConfig, check_flag
from ..grid import flatten_levels, image_size, level_shapes, make_grid
from ..static import padded_assign, padded_loss
from ..static.chunks import DEFAULT_MAX_MEMORY_MIB, Chunking
from ..static.padded import loss_form_for, poison_gradients
from ..targets import check_target_counts, checked_max_gt, pad_targets
from ..validation import (MMDET_WORDING, MisreadingWarnings, check_grids, check_index_column, check_positive,
                          check_rows, first_nonfinite, is_finite_number)


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
                                        loss_form=loss_form_for(self.max_gt), over_ranks=True).terms
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
            check_grids(shapes, self.strides, "level")
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
    fields = [instance_fields(instances, image) for image, instances in enumerate(batch_gt_instances)]
    owners = [(image, k) for image, (_, labels) in enumerate(fields) for k in range(labels.shape[0])]
    if validate and owners and device.type != "meta":  # the values as passed, in float64 on the host
        given = torch.cat([torch.cat((labels.detach().cpu().double().unsqueeze(1), boxes.detach().cpu().double()), 1)
                           for boxes, labels in fields])  # [N, 5]
        check_rows(given, lambda i: f"batch_gt_instances[{owners[i][0]}] (image {owners[i][0]}), instance "
                   f"{owners[i][1]}", num_classes, CORNERS, MMDET_WORDING)
    blocks = [torch.cat((torch.full((labels.shape[0], 1), float(image), device=device),
                         labels.to(device, torch.float32).unsqueeze(1), boxes.to(device, torch.float32)), dim=1)
              for image, (boxes, labels) in enumerate(fields)]  # [n, 6]
    return torch.cat(blocks) if blocks else torch.zeros((0, 6), device=device)


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


from .mmdet_head import bind_to_head, head_settings, square_strides  # noqa: E402  (the head binding, re-exported)

__all__ = ["LossWeights", "MMDetLoss", "bind_to_head", "head_settings", "square_strides"]
