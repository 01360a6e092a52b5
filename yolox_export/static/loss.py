"""StaticYoloXLoss: the YOLOX loss over the static assignment: masked sums, the class term on the matched cells only.

Shape legend: B batch, A cells, G padded targets, C classes, F matched-cell buffer. The padded entry point
``padded_loss`` (and the ``PaddedYoloXLoss`` module that gets exported) takes predictions [B, A, 5 + C] (raw head
outputs, levels concatenated), gt [B, G, 5] (class, cx, cy, w, h in pixels) and gt_mask bool [B, G]; G is read
from the input's shape only. The assignment runs in float32 with autocast off and without gradient; the loss terms
are float32 and carry gradients to the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from ..assignment import Assignment
from ..config import MODES, REG_WEIGHT, LossConfig, check_flag
from ..distributed import batch_num_fg
from ..grid import Grid, flatten_levels, image_size, level_shapes, make_grid
from ..loss_base import YoloXLossModule
from ..matched_loss import Prepared, padded_assignment_terms, terms_loss
from ..targets import check_target_counts, pad_targets
from ..validation import check_padded, check_predictions, check_targets, unwrap_model_output
from .assign import assign
from .chunks import DEFAULT_MAX_MEMORY_MIB, checked_budget
from .chunks import targets_per_chunk as chunk_size
from .export_form import exporting
from .window import uses_windows, window_assign, window_width
from .padding import Slots, sanitise_slots
from .terms import (at_cells, bce_with_logits, class_bce, columns, image_sums, matched_capacity, matched_cells,
                    matched_logits)


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


def nonfinite_marks(raw: Tensor) -> Tensor:
    """float [B, A]: 0 for a cell whose outputs are all finite, NaN otherwise.

    Eager (and compiled): from each row's max and min, two read-only reductions (torch's max and min reductions
    propagate NaN, and an infinity is its row's max or min); measured 6 ms against 18 ms for the product below at
    B=16, 640x640, C=80 on 2 threads. Under ONNX export: x * 0 summed over the row, 0 only when every x is finite by
    IEEE arithmetic alone, whatever a runtime's ReduceMax does with NaN."""
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


def padded_assign(raw: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid, config: LossConfig,
                  boxes: Tensor | None = None, max_memory_mib: float | None = None, audit: bool = False) -> Assignment:
    """The float32 assignment for raw predictions [B, A, 5 + C] and padded targets gt [B, G, 5] / gt_mask [B, G]
    (``boxes``: decoded boxes [B, A, 4] to use instead of decoding ``raw``'s box logits, as Megvii's head hands them
    over). Slots are sanitised first (``padding.sanitise_slots``): a masked slot never matters, a malformed real one
    is never assigned."""
    with torch.no_grad(), torch.autocast(device_type=raw.device.type, enabled=False):
        raw = raw.detach().float()
        slots = sanitise_slots(gt.float(), gt_mask, config.num_classes, config.box_format)
        return assign_slots(raw, nonfinite_marks(raw), slots, grid, config, boxes, max_memory_mib, audit=audit)


def assign_slots(raw: Tensor, marks: Tensor, slots: Slots, grid: Grid, config: LossConfig,
                 boxes: Tensor | None, max_memory_mib: float | None = None,
                 targets_per_chunk: int | None = None, audit: bool = False) -> Assignment:
    """The assignment for sanitised ``slots``: raw [B, A, 5 + C], its ``nonfinite_marks`` [B, A] and the decoded
    boxes [B, A, 4] (None: decoded from ``raw``), by the mode's form: windowed (``window.uses_windows``) or dense,
    its targets in chunks whose [B, Gc, X] working set fits ``max_memory_mib`` (``chunks``; None: unchunked), or
    of ``targets_per_chunk`` targets when given (a fixed Gc: needs a static G, not a static B)."""
    with torch.no_grad(), torch.autocast(device_type=raw.device.type, enabled=False):
        raw = raw.detach().float()
        # the box logits sliced once (a copy in an exported graph)
        boxes = config.box_format.decode(raw[..., :4], grid) if boxes is None else boxes.detach().float()  # [B, A, 4]
        usable = (marks == 0) & torch.isfinite(boxes).all(-1)  # [B, A]
        batch, cells = usable.shape
        num_targets, levels = slots.gt.shape[1], len(config.strides)
        if config.rules.windowed and uses_windows(num_targets, levels, cells):
            width = num_targets * window_width(levels) if isinstance(num_targets, int) else cells
            form = window_assign
        else:
            width, form = cells, assign
        per_chunk = chunk_size(max_memory_mib, batch, width) if targets_per_chunk is None else targets_per_chunk
        return form(raw, boxes, usable, slots.gt, slots.mask, grid, config, per_chunk, audit=audit)


def padded_loss(raw: Tensor, gt: Tensor, gt_mask: Tensor, grid: Grid, config: LossConfig,
                synchronise: bool = False, with_targets: bool = False, boxes: Tensor | None = None,
                packed: bool = False, max_memory_mib: float | None = None,
                targets_per_chunk: int | None = None, audit: bool = False) -> StaticOutput:
    """Assignment, loss (and, with ``with_targets``, the targets) for raw predictions [B, A, 5 + C] and padded
    targets [B, G, 5] / [B, G].

    The objectness term is a sum over all cells; the class, IoU and L1 terms are evaluated on the matched cells only,
    packed into a [B, F] buffer whose size comes from G (``terms.matched_capacity``), so no [B, A, C] or [B, A, 4]
    loss tensor is built. With
    ``packed`` (eager only: boolean indexing, it synchronises; ``StaticYoloXLoss.uses_reference_loss`` says when)
    the loss is the references' own (``matched_loss.padded_assignment_terms``) on this assignment instead, so loss
    and gradient are theirs bit for bit where the assignment is the same. A non-finite output anywhere makes the loss and its components NaN (those
    cells are also never assigned), and so does a malformed real target slot (``padding``). Box losses read only
    matched cells' box logits, so a background cell's huge logit (whose decoded box overflows) cannot reach the
    gradient. ``synchronise`` averages num_fg over the default process group (``config.averages_num_fg``); it is
    eager-only. ``boxes`` [B, A, 4], when given, are the decoded boxes
    (with their own gradient path) used for the assignment and, at matched cells, the IoU loss instead of decoding
    ``raw``'s box logits; the L1 term still reads ``raw``'s box logits. Whatever makes the loss NaN also makes
    every gradient element with respect to ``raw`` (and ``boxes``) NaN (``poison_gradients``). ``audit`` adds the
    per-target counts to the assignment (``Assignment.counts``, ``select.TargetCounts``).
    """
    with torch.autocast(device_type=raw.device.type, enabled=False):
        raw = raw.float()
        slots = sanitise_slots(gt.float(), gt_mask, config.num_classes, config.box_format)
        gt = slots.gt  # masked and malformed slots are zero rows from here on
        marks = nonfinite_marks(raw)  # [B, A]
        assignment = assign_slots(raw, marks, slots, grid, config, boxes, max_memory_mib, targets_per_chunk, audit)
        fg = assignment.fg_mask
        fg_float = fg.to(raw.dtype)
        num_fg = batch_num_fg(fg_float.sum(), config, synchronise)
        poison = marks.sum() + slots.poison  # 0, or NaN when any output or real target slot is not usable
        if boxes is not None:  # the caller's decoded boxes are outputs too
            poison = poison + nonfinite_marks(boxes).sum()

        box_logits, obj_logits, cls_logits = split_outputs(raw, config.num_classes)
        if packed:  # the references' own loss function on this assignment (eager; boolean indexing synchronises)
            zero = torch.zeros((), dtype=raw.dtype, device=raw.device)
            decoded = config.box_format.decode(torch.where(fg.unsqueeze(-1), box_logits, zero), grid)  # [B, A, 4]
            if boxes is not None:  # the caller's decoded boxes at matched cells; where() passes no gradient elsewhere
                decoded = torch.where(fg.unsqueeze(-1), boxes.float(), decoded)
            matched = padded_assignment_terms(Prepared(raw, decoded, grid), gt, assignment, config,
                                              num_fg if synchronise else None)
            loss, components, terms = terms_loss(matched, int(gt_mask.sum()))
            loss = loss + poison
            terms = tuple(term + poison for term in terms)
            image_loss = matched.image_loss() + poison  # [B]
            poisoned = torch.tensor(POISONED, device=components.device)  # [6]
            components = torch.where(poisoned, components + poison, components)
        else:
            sums = masked_terms(raw, box_logits, obj_logits, cls_logits, boxes, gt, grid, assignment, config)
            obj_divisor = max(fg.numel(), 1) if config.obj_over_all_cells else num_fg
            divisors = (num_fg, obj_divisor, num_fg, num_fg)
            terms = tuple(s.sum() / d + poison for s, d in zip(sums, divisors))  # each []
            loss_iou, loss_obj, loss_cls, loss_l1 = terms
            loss = REG_WEIGHT * loss_iou + loss_obj + loss_cls + loss_l1
            image_loss = sum(w * s / d for w, s, d in zip(TERM_WEIGHTS, sums, divisors)) + poison  # [B]
            num_gts = gt_mask.sum().to(raw.dtype).clamp(min=1.0)
            components = torch.stack((loss_iou, loss_obj, loss_cls, loss_l1, num_fg / num_gts, loss)).detach()
        gradient_poison = poison_gradients(poison, raw, boxes)
        loss = loss + gradient_poison
        terms = (terms[0], terms[1] + gradient_poison, *terms[2:])  # the poison once, on the term every loss has
        out = StaticOutput(assignment, loss, components, terms, image_loss + gradient_poison)
        if with_targets:
            matched = gt.gather(1, assignment.matched_gt.clamp(min=0).unsqueeze(-1).expand(-1, -1, 5))  # [B, A, 5]
            classes = torch.arange(config.num_classes, device=raw.device, dtype=matched.dtype)
            on = fg_float.unsqueeze(-1)
            out.cls_target = (matched[..., :1] == classes).to(raw.dtype) * assignment.matched_iou.unsqueeze(-1) * on
            out.obj_target = fg_float
            out.reg_target = matched[..., 1:5] * on
            out.l1_target = config.box_format.l1_target(matched[..., 1:5], grid.strides, grid.x_shifts,
                                                        grid.y_shifts) * on
    return out


#: The components a non-finite output or malformed real slot makes NaN: every loss term, not num_fg / num_gts.
POISONED = (True, True, True, True, False, True)
#: The weights of the (iou, obj, cls, l1) terms in the loss.
TERM_WEIGHTS = (REG_WEIGHT, 1.0, 1.0, 1.0)


def masked_terms(raw: Tensor, box_logits: Tensor, obj_logits: Tensor, cls_logits: Tensor, boxes: Tensor | None,
                 gt: Tensor, grid: Grid, assignment: Assignment,
                 config: LossConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each image's sums [B] of the (iou, obj, cls, l1) loss terms, unweighted and not yet divided, static shapes
    only: the objectness BCE over every cell, the other three over the matched-cell buffer [B, F]
    (``terms.matched_cells``; F = ``terms.matched_capacity`` from G), so no [B, A, C] or [B, A, 4] loss tensor is
    built. raw [B, A, 5 + C] and its logits (``split_outputs``); ``boxes`` [B, A, 4] the caller's decoded boxes
    (Megvii's head) or None (the buffer's box logits are decoded); gt [B, G, 5] the sanitised target rows. The
    loss's terms are these summed over the batch and divided."""
    fg = assignment.fg_mask
    zero = torch.zeros((), dtype=raw.dtype, device=raw.device)
    sum_obj = image_sums(bce_with_logits(obj_logits.squeeze(-1), fg.to(obj_logits.dtype)))  # [B]
    cells, valid = matched_cells(fg, matched_capacity(fg.shape[1], gt.shape[1], config.max_dynamic_k))  # [B, F]
    box_at, cls_at = matched_logits(raw, box_logits, cls_logits, cells, valid)  # [B, F, 4], [B, F, C]
    grid_at = Grid(grid.x_shifts[cells], grid.y_shifts[cells], grid.strides[cells])  # the cells' constants [B, F]
    form = config.box_format
    decoded = form.decode(box_at, grid_at)  # [B, F, 4]
    if boxes is not None:  # the caller's boxes at the matched cells; where() passes no gradient to unused entries
        decoded = torch.where(valid.unsqueeze(-1), at_cells(boxes.float(), cells), decoded)
    target_index = at_cells(assignment.matched_gt.clamp(min=0), cells)  # [B, F]
    target = gt.gather(1, target_index.unsqueeze(-1).expand(-1, -1, gt.shape[-1]))  # [B, F, 5]
    sum_iou = image_sums(torch.where(valid, form.iou_loss(decoded, target[..., 1:5], config.iou_type), zero))  # [B]
    sum_cls = class_bce(cls_at, target[..., 0].long(), at_cells(assignment.matched_iou, cells), valid)  # [B]
    if not config.use_l1:
        return sum_iou, sum_obj, sum_cls, torch.zeros_like(sum_obj)
    l1 = form.l1_target(target[..., 1:5], grid_at.strides, grid_at.x_shifts, grid_at.y_shifts)  # [B, F, 4]
    return sum_iou, sum_obj, sum_cls, image_sums(torch.where(valid.unsqueeze(-1), (box_at - l1).abs(), zero))


def split_outputs(raw: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(box [B, A, 4], objectness [B, A, 1], class [B, A, C]) logits of raw [B, A, 5 + C].

    One ``split`` in eager, so that backward assembles the [B, A, 5 + C] gradient once rather than zero-filling and
    adding one full-size tensor per slice; plain slices under ONNX export, where a split becomes a sequence op that
    TensorRT's parser lacks (``terms.columns``: their backward pads). The values are the same either way."""
    if exporting():
        width = raw.shape[-1]
        return columns(raw, 0, 4), columns(raw, 4, 5), columns(raw, 5, width)
    return raw.split((4, 1, num_classes), dim=-1)


class UntracedCall:
    """A method that dynamo does not trace itself (``torch.compiler.disable(recursive=False)``: what it calls is
    traced), wrapped on first use, so that importing this module does not import torch._dynamo (about a second)."""

    def __init__(self, function):
        self.function = function
        self.untraced = None

    def __get__(self, instance, owner):
        if self.untraced is None:
            self.untraced = torch.compiler.disable(self.function, recursive=False)
        return self.untraced.__get__(instance, owner)


class StaticYoloXLoss(YoloXLossModule):
    """Drop-in for ``RegularYoloXLoss`` (mode="regular") and ``FastYoloXLoss`` (mode="fast"): same inputs, same
    ``(loss, components)``, same ``assign``; built from static-shape masked tensor operations.

    ``max_gt`` fixes G; None pads to the batch's largest count. An image with more than ``max_gt`` targets raises
    ValueError naming it when validating; with ``validate=False`` the loss is NaN instead (``pad_targets``).

    ``max_memory_mib`` bounds the assignment's working set, the temporaries whose size grows with G: the targets are
    assigned in chunks whose [B, Gc, X] tensors fit it (``chunks``), with the same answer bit for bit; None
    assigns every target at once. The inputs, gradients, [B, A, C] class probabilities and loss terms are outside
    the budget. A budget smaller than one target's chunk runs one target at a time.

    ``validate`` only checks the inputs (once per call) and raises; it never changes the arithmetic. The arithmetic
    follows from ``max_gt`` alone (``uses_reference_loss``).
    """

    modes = MODES

    def __init__(self, strides, num_classes: int, mode: str = "regular", use_l1: bool = False,
                 center_sampling_radius: float = 2.5, iou_type: str = "iou", dynamic_ks_bias: float = 1.1,
                 sync_num_fgs: bool = False, obj_loss_fix: bool = False, max_gt: int | None = None,
                 validate: bool = True, max_memory_mib: float | None = DEFAULT_MAX_MEMORY_MIB):
        super().__init__(validate)
        self.config = LossConfig(tuple(strides), num_classes, mode=mode, use_l1=use_l1,
                                 center_sampling_radius=center_sampling_radius, iou_type=iou_type,
                                 dynamic_ks_bias=dynamic_ks_bias, sync_num_fgs=sync_num_fgs, obj_loss_fix=obj_loss_fix)
        if max_gt is not None and (isinstance(max_gt, bool) or not isinstance(max_gt, int) or max_gt < 1):
            raise ValueError(f"max_gt must be an int >= 1 or None, got {max_gt!r}")
        self.max_gt = max_gt
        self.max_memory_mib = checked_budget(max_memory_mib)

    @property
    def uses_reference_loss(self) -> bool:
        """The one rule that picks the loss arithmetic, from what the call is (never from ``validate``).

        ``max_gt=None``: each call pads the targets to the batch's largest count, which reads that count back from
        the device, so the call is eager and synchronising anyway; the loss terms are then the references' own
        (``matched_loss``) over the matched cells, and loss and gradient are the reference's bit for bit where the
        assignment is the same. ``max_gt`` fixed: G is static, and the loss is the static graph's matched-cell form
        (``masked_terms``, no synchronisation, the form that is compiled and exported), equal to the references' to
        float32 rounding."""
        return self.max_gt is None

    def _marked_call(self, model_output, targets: Tensor, *args, **kwargs):
        """``nn.Module.__call__``, with the ragged targets' row count N marked dynamic first, so that
        ``torch.compile(module, fullgraph=True)`` compiles one graph for every N rather than guarding on the first
        call's N and compiling again when it changes. This frame itself is not traced (``UntracedCall``);
        everything it calls is."""
        if isinstance(targets, Tensor) and targets.dim() == 2:
            torch._dynamo.maybe_mark_dynamic(targets, 0)
        return nn.Module.__call__(self, model_output, targets, *args, **kwargs)

    __call__ = UntracedCall(_marked_call)

    def loss_and_assignment(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor, Assignment]:
        """``forward``'s (loss, components) and the assignment they were computed from, in one pass."""
        out = self.static_output(model_output, targets)
        return out.loss, out.components, out.assignment

    def static_output(self, model_output, targets: Tensor) -> StaticOutput:
        """Everything one call computes (``StaticOutput``: the assignment, the loss, its components and its four
        terms with their gradients), for the same inputs as ``forward``."""
        return self._padded_loss(*self._padded_inputs(model_output, targets))

    def audit(self, model_output, targets: Tensor):
        """The per-target audit (``audit.TargetAudit``) of the same inputs as ``forward``: row i describes
        targets[i] (its k, selected, lost, won and kept cells, status; docs/audit.md)."""
        from ..audit import static_audit

        return static_audit(unwrap_model_output(model_output), targets, self.config, self.max_gt,
                            self.max_memory_mib, self.validate)

    def assign(self, model_output, targets: Tensor) -> Assignment:
        raw, gt, gt_mask, shapes = self._padded_inputs(model_output, targets)
        return padded_assign(raw, gt, gt_mask, self.grid_for(shapes, raw.device), self.config,
                             max_memory_mib=self.max_memory_mib)

    def forward_padded(self, raw: Tensor, gt: Tensor, gt_mask: Tensor, shapes: Sequence[tuple[int, int]],
                       with_targets: bool = False) -> StaticOutput:
        """The padded entry point: raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G], and the levels' (H, W)."""
        if self.validate:
            check_padded(raw, gt, gt_mask, shapes, self.config)
            self._misreadings.check(gt[..., 1:5][gt_mask], image_size(shapes, self.config.strides),
                                    self.config.box_format)
        return self._padded_loss(raw, gt, gt_mask, shapes, with_targets)

    def _padded_loss(self, raw: Tensor, gt: Tensor, gt_mask: Tensor, shapes: Sequence[tuple[int, int]],
                     with_targets: bool = False) -> StaticOutput:
        return padded_loss(raw, gt, gt_mask, self.grid_for(shapes, raw.device), self.config,
                           synchronise=self.config.averages_num_fg, with_targets=with_targets,
                           packed=self.uses_reference_loss, max_memory_mib=self.max_memory_mib)

    def grid_for(self, shapes: Sequence[tuple[int, int]], device) -> Grid:
        return make_grid(shapes, self.config.strides, device=device)

    def _padded_inputs(self, model_output, targets: Tensor):
        predictions = unwrap_model_output(model_output)
        if self.validate:
            check_predictions(predictions, self.config.strides, self.config.num_classes)
            check_targets(targets, predictions[0].shape[0], self.config.num_classes, device=predictions[0].device,
                          box_format=self.config.box_format)
            self._misreadings.check(targets[:, 2:6], image_size(level_shapes(predictions), self.config.strides),
                                    self.config.box_format)
            if self.max_gt is not None:
                check_target_counts(targets, predictions[0].shape[0], self.max_gt)
        gt, gt_mask = pad_targets(targets, predictions[0].shape[0], self.max_gt, validate=False)
        return flatten_levels(predictions), gt, gt_mask, level_shapes(predictions)


class PaddedYoloXLoss(nn.Module):
    """The exported graph: fixed levels, inputs (predictions [B, A, 5 + C], targets [B, G, 5], target_mask [B, G]).

    Returns (fg_mask, matched_gt, matched_iou, loss_components, image_loss [B]), with ``with_targets`` also
    (cls_target, obj_target, reg_target, l1_target), then (target_k, target_cells) int64 [B, G] (each target's
    dynamic k and kept cells, 0 at masked slots: the audit's, ``select.TargetCounts``), and with ``with_grad``
    last ``predictions_grad`` [B, A, 5 + C],
    d loss / d predictions (computed with ``torch.autograd.grad`` inside ``forward``, also under ``torch.no_grad``;
    the outputs are then detached; exported, it is traced into the graph: ``export.grad_graph``). Without
    ``with_grad``, ``image_loss`` carries gradients to ``predictions``. ``max_memory_mib`` as
    ``StaticYoloXLoss``'s, in eager and compiled calls;
    an exported graph's G is symbolic, so it keeps one formulation (every target at once) for every G, unless it is
    exported with G fixed and ``targets_per_chunk`` targets per chunk (``export_onnx``), the chunks then unrolled.
    """

    def __init__(self, config: LossConfig, shapes: Sequence[tuple[int, int]], with_targets: bool = False,
                 max_memory_mib: float | None = DEFAULT_MAX_MEMORY_MIB, targets_per_chunk: int | None = None,
                 with_grad: bool = False):
        super().__init__()
        self.config = config
        self.max_memory_mib = checked_budget(max_memory_mib)
        if targets_per_chunk is not None and (isinstance(targets_per_chunk, bool) or not isinstance(
                targets_per_chunk, int) or targets_per_chunk < 1):
            raise ValueError(f"targets_per_chunk must be an int >= 1 or None, got {targets_per_chunk!r}")
        self.targets_per_chunk = targets_per_chunk
        self.shapes = [tuple(s) for s in shapes]
        self.with_targets = check_flag("with_targets", with_targets)
        self.with_grad = check_flag("with_grad", with_grad)
        grid = make_grid(self.shapes, config.strides)
        self.register_buffer("x_shifts", grid.x_shifts, persistent=False)
        self.register_buffer("y_shifts", grid.y_shifts, persistent=False)
        self.register_buffer("strides", grid.strides, persistent=False)

    @property
    def num_cells(self) -> int:
        return int(self.strides.shape[0])

    def forward(self, predictions: Tensor, targets: Tensor, target_mask: Tensor):
        grid = Grid(self.x_shifts, self.y_shifts, self.strides, tuple(self.shapes))
        options = dict(with_targets=self.with_targets, max_memory_mib=self.max_memory_mib,
                       targets_per_chunk=self.targets_per_chunk, audit=True)
        gradient = ()
        if self.with_grad:
            with torch.enable_grad():
                leaf = predictions.detach().requires_grad_(True)
                out = padded_loss(leaf, targets, target_mask, grid, self.config, **options)
                gradient = torch.autograd.grad(out.loss, leaf)  # ([B, A, 5 + C],)
            out.image_loss = out.image_loss.detach()
        else:
            out = padded_loss(predictions, targets, target_mask, grid, self.config, **options)
        a = out.assignment
        outputs = (a.fg_mask, a.matched_gt, a.matched_iou, out.components, out.image_loss)
        if self.with_targets:
            outputs += (out.cls_target, out.obj_target, out.reg_target, out.l1_target)
        outputs += (a.counts.k, a.counts.cells)  # target_k, target_cells [B, G]
        return outputs + gradient

