"""The padded entry point, ``padded_loss``: the one function that ``StaticYoloXLoss``, the exported graph
(``PaddedYoloXLoss``) and both framework drop-ins (``integrations``) call.

Shape legend: B batch, A cells (all levels, stride order, row-major), G padded targets, C classes, F matched-cell
buffer (``buffer.matched_capacity``).

Inputs: raw head outputs [B, A, 5 + C] (box logits, objectness and class logits; levels concatenated), gt [B, G, 5]
(class, then the box in the mode's format, ``config.box_format``, in pixels) and gt_mask bool [B, G]; G is read from
the input's shape only. ``padded_loss`` sets up the precision once (float32, autocast off), sanitises the slots
(``sanitise``), assigns (``assign.assign``: float32, no gradient) and evaluates the loss in the form its caller
chose:

* ``masked_loss``: static shapes only, no host synchronisation (the form that is compiled and exported): the
  objectness term over all cells, the class, IoU and L1 terms over the matched-cell buffer [B, F];
* ``reference_loss``: the references' own ``matched_loss`` over the matched cells (eager only: boolean indexing
  synchronises), so that loss and gradient are the references' bit for bit where the assignment is the same.

Whatever makes the loss NaN (a non-finite output, a malformed real target slot) also makes every gradient element
with respect to the predictions NaN (``poison_gradients``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..assignment import Assignment
from ..config import REG_WEIGHT, LossConfig
from ..distributed import batch_num_fg
from ..grid import Grid
from ..matched_loss import Prepared, padded_assignment_terms, terms_loss
from .assign import assign
from .bce import bce_with_logits, class_bce, image_sums
from .buffer import at_cells, matched_capacity, matched_cells, matched_logits
from .chunks import UNCHUNKED, Chunking
from .export_form import exporting, split_outputs
from .sanitise import sanitise_slots


@dataclass
class StaticOutput:
    """Everything the padded entry point computes. ``image_loss`` [B] is each image's share of the loss: its IoU,
    objectness, class and L1 terms, weighted and divided as in the total (by the batch's num_fg, or objectness by
    B·A with ``obj_loss_fix``), so that its sum is the loss to float32 rounding and permuting the images permutes
    it; it carries gradients, and it is NaN wherever the loss is. The targets ([B, A, ...], zero on background
    cells) are only computed when asked for (``with_targets``), else None."""

    assignment: Assignment
    loss: Tensor
    components: Tensor  # [6]: iou, obj, cls, l1, num_fg / num_gts, loss (detached)
    terms: tuple[Tensor, Tensor, Tensor, Tensor]  # iou, obj, cls, l1 with their gradients; loss = 5 * iou + the rest
    image_loss: Tensor  # [B]: each image's share of the loss; sums to ``loss`` to float32 rounding
    cls_target: Tensor | None = None  # [B, A, C]
    obj_target: Tensor | None = None  # [B, A]
    reg_target: Tensor | None = None  # [B, A, 4]
    l1_target: Tensor | None = None  # [B, A, 4]


#: The weights of the (iou, obj, cls, l1) terms in the loss.
TERM_WEIGHTS = (REG_WEIGHT, 1.0, 1.0, 1.0)


def padded_loss(raw: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid, config: LossConfig, *,
                boxes: Tensor | None = None, chunking: Chunking = UNCHUNKED, loss_form=None,
                with_targets: bool = False, audit: bool = False, over_ranks: bool = False) -> StaticOutput:
    """Assignment, loss and (``with_targets``) training targets for raw [B, A, 5 + C] and gt [B, G, 5] / gt_mask
    [B, G] on ``grid``.

    ``boxes`` [B, A, 4], when given, are the caller's decoded boxes (Megvii's head decodes its own, with their own
    gradient path): the assignment ranks them and the IoU loss reads them at the matched cells instead of decoding
    ``raw``'s box logits; the L1 term still reads ``raw``'s box logits. ``chunking`` says how the assignment takes
    its targets (``chunks``). ``loss_form`` is ``masked_loss`` (None) or ``reference_loss`` (eager only).
    ``over_ranks`` (the eager drop-ins; never the exported graph, which has no ranks) averages num_fg over the
    default process group where the mode does so (``config.averages_num_fg``) and one is initialised. ``audit``
    adds each target's counts to the assignment (``Assignment.counts``, ``select.Contest``).
    """
    loss_form = masked_loss if loss_form is None else loss_form
    with torch.autocast(device_type=raw.device.type, enabled=False):
        raw = raw.float()
        boxes = None if boxes is None else boxes.float()
        slots = sanitise_slots(gt.float(), gt_mask, config.num_classes, config.box_format)
        marks = nonfinite_marks(raw)  # [B, A]
        assignment = assign(raw, marks, boxes, slots.gt, slots.mask, grid, config, chunking, audit)
        poison = marks.sum() + slots.poison  # 0, or NaN when any output or real target slot is not usable
        if boxes is not None:  # the caller's decoded boxes are outputs too
            poison = poison + nonfinite_marks(boxes).sum()
        num_fg = batch_num_fg(assignment.fg_mask.to(raw.dtype).sum(), config, over_ranks)
        loss, components, terms, image_loss = loss_form(raw, boxes, slots.gt, gt_mask, grid, assignment, config,
                                                        num_fg)
        gradient_poison = poison_gradients(poison, raw, boxes)
        out = StaticOutput(assignment, loss + poison + gradient_poison, components + poisoned_components(poison),
                           (terms[0] + poison, terms[1] + poison + gradient_poison, *(t + poison for t in terms[2:])),
                           image_loss + poison + gradient_poison)
        if with_targets:
            out.cls_target, out.obj_target, out.reg_target, out.l1_target = training_targets(
                slots.gt, assignment, grid, config)
    return out


def poisoned_components(poison: Tensor) -> Tensor:
    """[6]: ``poison`` at the loss's components a non-finite output or malformed real slot makes NaN (iou, obj, cls,
    l1, loss), 0 at num_fg / num_gts; added to the components (x + 0 is x). Built from ``poison`` on its device (no
    tensor from host data: CUDA graph capture refuses a host-to-device copy)."""
    poison = poison.reshape(1)
    return torch.cat((poison.expand(4), torch.zeros_like(poison), poison))


def padded_assign(raw: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid, config: LossConfig, *,
                  boxes: Tensor | None = None, chunking: Chunking = UNCHUNKED, audit: bool = False) -> Assignment:
    """``padded_loss``'s assignment alone, for the same inputs."""
    with torch.autocast(device_type=raw.device.type, enabled=False):
        raw = raw.detach().float()
        slots = sanitise_slots(gt.float(), gt_mask, config.num_classes, config.box_format)
        return assign(raw, nonfinite_marks(raw), None if boxes is None else boxes.float(), slots.gt, slots.mask,
                      grid, config, chunking, audit)


def loss_form_for(max_gt: int | None):
    """The one rule that picks the loss arithmetic, from what the call is (never from ``validate``).

    ``max_gt=None``: each call pads the targets to the batch's largest count, which reads that count back from the
    device, so the call is eager and synchronising anyway; the loss terms are then the references' own
    (``reference_loss``), and loss and gradient are the reference's bit for bit where the assignment is the same.
    ``max_gt`` fixed: G is static, and the loss is the static graph's matched-cell form (``masked_loss``: no
    synchronisation, the form that is compiled and exported), equal to the references' to float32 rounding."""
    return reference_loss if max_gt is None else masked_loss


def masked_loss(raw: Tensor, boxes: Tensor | None, gt: Tensor, gt_mask: Tensor, grid: Grid, assignment: Assignment,
                config: LossConfig, num_fg: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...], Tensor]:
    """(loss, components [6], terms (iou, obj, cls, l1), image_loss [B]) in static shapes: the sums of
    ``masked_terms`` divided by num_fg (objectness by B·A with ``obj_loss_fix``). gt [B, G, 5] are the sanitised
    slots; gt_mask [B, G] the caller's mask (its count is num_gts)."""
    sums = masked_terms(raw, boxes, gt, grid, assignment, config)
    obj_divisor = max(assignment.fg_mask.numel(), 1) if config.obj_over_all_cells else num_fg
    divisors = (num_fg, obj_divisor, num_fg, num_fg)
    terms = tuple(s.sum() / d for s, d in zip(sums, divisors))  # each []
    loss = REG_WEIGHT * terms[0] + terms[1] + terms[2] + terms[3]
    image_loss = sum(w * s / d for w, s, d in zip(TERM_WEIGHTS, sums, divisors))  # [B]
    num_gts = gt_mask.sum().to(raw.dtype).clamp(min=1.0)
    return loss, torch.stack((*terms, num_fg / num_gts, loss)).detach(), terms, image_loss


def reference_loss(raw: Tensor, boxes: Tensor | None, gt: Tensor, gt_mask: Tensor, grid: Grid,
                   assignment: Assignment, config: LossConfig,
                   num_fg: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, ...], Tensor]:
    """``masked_loss``'s outputs from the references' own ``matched_loss`` over the matched cells (eager only:
    boolean indexing reads the count back). Box logits are decoded at the matched cells only (elsewhere 0), so a
    background cell's huge logit cannot reach the gradient."""
    fg = assignment.fg_mask.unsqueeze(-1)  # [B, A, 1]
    box_logits = split_outputs(raw, config.num_classes)[0]
    decoded = config.box_format.decode(torch.where(fg, box_logits, torch.zeros((), dtype=raw.dtype,
                                                                               device=raw.device)), grid)  # [B, A, 4]
    if boxes is not None:  # the caller's decoded boxes at matched cells; where() passes no gradient elsewhere
        decoded = torch.where(fg, boxes, decoded)
    matched = padded_assignment_terms(Prepared(raw, decoded, grid), gt, assignment, config,
                                      num_fg if config.averages_num_fg else None)
    loss, components, terms = terms_loss(matched, int(gt_mask.sum()))
    return loss, components, terms, matched.image_loss()


def masked_terms(raw: Tensor, boxes: Tensor | None, gt: Tensor, grid: Grid, assignment: Assignment,
                 config: LossConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each image's sums [B] of the (iou, obj, cls, l1) loss terms, unweighted and not yet divided, static shapes
    only: the objectness BCE over every cell, the other three over the matched-cell buffer [B, F]
    (``buffer.matched_cells``; F from G), so no [B, A, C] or [B, A, 4] loss tensor is built. ``boxes`` [B, A, 4]
    the caller's decoded boxes or None (the buffer's box logits are decoded); gt [B, G, 5] the sanitised slots."""
    box_logits, obj_logits, cls_logits = split_outputs(raw, config.num_classes)
    fg = assignment.fg_mask
    zero = torch.zeros((), dtype=raw.dtype, device=raw.device)
    sum_obj = image_sums(bce_with_logits(obj_logits.squeeze(-1), fg.to(obj_logits.dtype)))  # [B]
    cells, valid = matched_cells(fg, matched_capacity(fg.shape[1], gt.shape[1], config.max_dynamic_k))  # [B, F]
    box_at, cls_at = matched_logits(raw, box_logits, cls_logits, cells, valid)  # [B, F, 4], [B, F, C]
    grid_at = Grid(grid.x_shifts[cells], grid.y_shifts[cells], grid.strides[cells])  # the cells' constants [B, F]
    form = config.box_format
    decoded = form.decode(box_at, grid_at)  # [B, F, 4]
    if boxes is not None:  # the caller's boxes at the matched cells; where() passes no gradient to unused entries
        decoded = torch.where(valid.unsqueeze(-1), at_cells(boxes, cells), decoded)
    target_index = at_cells(assignment.matched_gt.clamp(min=0), cells)  # [B, F]
    target = gt.gather(1, target_index.unsqueeze(-1).expand(-1, -1, gt.shape[-1]))  # [B, F, 5]
    sum_iou = image_sums(torch.where(valid, form.iou_loss(decoded, target[..., 1:5], config.iou_type), zero))  # [B]
    sum_cls = class_bce(cls_at, target[..., 0].long(), at_cells(assignment.matched_iou, cells), valid)  # [B]
    if not config.use_l1:
        return sum_iou, sum_obj, sum_cls, torch.zeros_like(sum_obj)
    l1 = form.l1_target(target[..., 1:5], grid_at.strides, grid_at.x_shifts, grid_at.y_shifts)  # [B, F, 4]
    return sum_iou, sum_obj, sum_cls, image_sums(torch.where(valid.unsqueeze(-1), (box_at - l1).abs(), zero))


def training_targets(gt: Tensor, assignment: Assignment, grid: Grid,
                     config: LossConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(cls_target [B, A, C], obj_target [B, A], reg_target [B, A, 4], l1_target [B, A, 4]) of the assignment
    against the sanitised slots gt [B, G, 5]; zero on background cells."""
    fg = assignment.fg_mask.to(gt.dtype).unsqueeze(-1)  # [B, A, 1]
    matched = gt.gather(1, assignment.matched_gt.clamp(min=0).unsqueeze(-1).expand(-1, -1, 5))  # [B, A, 5]
    classes = torch.arange(config.num_classes, device=gt.device, dtype=matched.dtype)
    cls_target = (matched[..., :1] == classes).to(gt.dtype) * assignment.matched_iou.unsqueeze(-1) * fg
    l1_target = config.box_format.l1_target(matched[..., 1:5], grid.strides, grid.x_shifts, grid.y_shifts) * fg
    return cls_target, fg.squeeze(-1), matched[..., 1:5] * fg, l1_target


def nonfinite_marks(raw: Tensor) -> Tensor:
    """float [B, A]: 0 for a cell whose outputs are all finite, NaN otherwise.

    Eager (and compiled): from each row's max and min, two read-only reductions (torch's max and min reductions
    propagate NaN, and an infinity is its row's max or min), cheaper than the product below. Under ONNX export:
    x * 0 summed over the row, 0 only when every x is finite by IEEE arithmetic alone, whatever a runtime's
    ReduceMax does with NaN."""
    raw = raw.detach()
    if exporting():
        return (raw * 0).sum(-1)
    finite = torch.isfinite(raw.amax(-1)) & torch.isfinite(raw.amin(-1))  # [B, A]
    return torch.where(finite, 0.0, float("nan")).to(raw.dtype)


class _PoisonGradients(torch.autograd.Function):
    """A zero whose gradient with respect to each of ``tensors`` is ``poison`` (0, or NaN) at every element."""

    @staticmethod
    def forward(ctx, poison: Tensor, *tensors: Tensor) -> Tensor:
        ctx.save_for_backward(poison)
        ctx.shapes = [t.shape for t in tensors]
        return torch.zeros_like(poison)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (poison,) = ctx.saved_tensors
        return (None, *((grad * poison).expand(shape) for shape in ctx.shapes))


def poison_gradients(poison: Tensor, *tensors: Tensor) -> Tensor:
    """A float zero to add to the loss so that, when ``poison`` is NaN (a non-finite output, a malformed real target
    slot, more targets than G), every gradient element with respect to ``tensors`` is NaN too, not only the loss:
    an optimizer, or a mixed-precision scaler that looks at gradients, then never steps on the gradient of a partial
    batch. When ``poison`` is 0 the gradients gain an exact zero. No host synchronisation; the backward adds one
    broadcast scalar per tensor. First-order gradients only: a second derivative (``create_graph=True``) does not
    see the poison. A forward-only export (nothing requires grad) gets a plain zero; the gradient graph's trace
    (``export.grad_graph``) records the backward's multiply by ``poison``."""
    tensors = tuple(t for t in tensors if t is not None and t.requires_grad)
    if not tensors:
        return torch.zeros_like(poison)
    return _PoisonGradients.apply(poison.detach(), *tensors)
