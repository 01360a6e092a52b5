"""The static loss as modules: ``StaticYoloXLoss``, the drop-in for the references' (loss, components) call, and
``PaddedYoloXLoss``, the exported graph. Both are thin wrappers over the padded entry point ``padded.padded_loss``.

Shape legend: B batch, A cells, G padded targets, C classes. Predictions are a list of per-level [B, 1, H, W, 5 + C]
head outputs (``StaticYoloXLoss``) or [B, A, 5 + C] (``PaddedYoloXLoss``); targets [N, 6] rows (image index,
class, box in the mode's format, pixels) or padded gt [B, G, 5] with a bool mask [B, G].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..assignment import Assignment
from ..config import MODES, LossConfig, check_flag
from ..grid import Grid, flatten_levels, image_size, level_shapes, make_grid
from ..loss_base import YoloXLossModule
from ..targets import check_target_counts, checked_max_gt, pad_targets
from ..validation import check_padded, check_predictions, check_targets, unwrap_model_output
from .chunks import DEFAULT_MAX_MEMORY_MIB, Chunking
from .padded import StaticOutput, loss_form_for, padded_assign, padded_loss


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
    """Drop-in for the references (``RegularYoloXLoss`` for mode="regular", ``FastYoloXLoss`` for "fast",
    ``MegviiYoloXLoss``, ``MMDetYoloXLoss``): same inputs, same ``(loss, components)``, same ``assign``; built
    from static-shape masked tensor operations.

    ``max_gt`` fixes G; None pads to the batch's largest count. An image with more than ``max_gt`` targets raises
    ValueError naming it when validating; with ``validate=False`` the loss is NaN instead (``pad_targets``).

    ``max_memory_mib`` bounds the assignment's working set, the temporaries whose size grows with G: the targets are
    assigned in chunks whose [B, Gc, X] tensors fit it (``chunks``), with the same answer bit for bit; None
    assigns every target at once. The inputs, gradients, [B, A, C] class probabilities and loss terms are outside
    the budget. A budget smaller than one target's chunk runs one target at a time.

    ``validate`` only checks the inputs (once per call) and raises; it never changes the arithmetic. The arithmetic
    follows from ``max_gt`` alone (``loss_form``).
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
        self.max_gt = checked_max_gt(max_gt)
        self.chunking = Chunking(max_memory_mib)

    @property
    def max_memory_mib(self) -> float | None:
        return self.chunking.max_memory_mib

    @property
    def loss_form(self):
        """``padded.masked_loss`` or ``padded.reference_loss``, from ``max_gt`` alone (``padded.loss_form_for``)."""
        return loss_form_for(self.max_gt)

    def _marked_call(self, model_output, targets: Tensor, *args, **kwargs):
        """``nn.Module.__call__``, with the ragged targets' row count N marked dynamic first, so that
        ``torch.compile(module, fullgraph=True)`` compiles one graph for every N rather than guarding on the first
        call's N and compiling again when it changes. On the sync-free path (``max_gt`` fixed, ``validate=False``)
        nothing reads N back, so N is marked unbacked: no 0/1 specialisation, one graph for N = 0 and 1 too.
        Elsewhere (padding to the batch's count, or validating, reads values back anyway) it is only marked
        dynamic. This frame itself is not traced (``UntracedCall``); everything it calls is."""
        if isinstance(targets, Tensor) and targets.dim() == 2:
            targets = targets.view_as(targets)  # the mark goes on this view, never on the caller's tensor
            if self.max_gt is not None and not self.validate:
                torch._dynamo.decorators.mark_unbacked(targets, 0)
            else:
                torch._dynamo.maybe_mark_dynamic(targets, 0)
        return nn.Module.__call__(self, model_output, targets, *args, **kwargs)

    __call__ = UntracedCall(_marked_call)

    def forward(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, components [iou, obj, cls, l1, num_fg / num_gts, loss]) for per-level predictions and [N, 6]
        targets, as the references' ``forward``."""
        raw, gt, gt_mask, grid = self.padded_inputs(model_output, targets)
        out = padded_loss(raw, gt, gt_mask, grid, self.config, chunking=self.chunking, loss_form=self.loss_form,
                          over_ranks=True)
        return out.loss, out.components

    def output(self, model_output, targets: Tensor) -> StaticOutput:
        """Everything one call computes (``StaticOutput``: the assignment, the loss, its components and its four
        terms with their gradients, each image's share), for the same inputs as ``forward``."""
        raw, gt, gt_mask, grid = self.padded_inputs(model_output, targets)
        return padded_loss(raw, gt, gt_mask, grid, self.config, chunking=self.chunking, loss_form=self.loss_form,
                           over_ranks=True)

    def loss_and_assignment(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor, Assignment]:
        """``forward``'s (loss, components) and the assignment they were computed from, in one pass."""
        out = self.output(model_output, targets)
        return out.loss, out.components, out.assignment

    def audit(self, model_output, targets: Tensor):
        """The per-target audit (``audit.TargetAudit``) of the same inputs as ``forward``: row i describes
        targets[i] (its k, selected, lost, won and kept cells, status; docs/audit.md)."""
        from ..audit import static_audit

        return static_audit(unwrap_model_output(model_output), targets, self.config, self.max_gt, self.chunking,
                            self.validate)

    def assign(self, model_output, targets: Tensor) -> Assignment:
        raw, gt, gt_mask, grid = self.padded_inputs(model_output, targets)
        return padded_assign(raw, gt, gt_mask, grid, self.config, chunking=self.chunking)

    def forward_padded(self, raw: Tensor, gt: Tensor, gt_mask: Tensor, shapes: Sequence[tuple[int, int]],
                       with_targets: bool = False) -> StaticOutput:
        """The padded entry point for padded inputs: raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G], and the
        levels' (H, W)."""
        if self.validate:
            check_padded(raw, gt, gt_mask, shapes, self.config)
            self._misreadings.check(gt[..., 1:5][gt_mask], image_size(shapes, self.config.strides),
                                    self.config.box_format)
        return padded_loss(raw, gt, gt_mask, make_grid(shapes, self.config.strides, device=raw.device), self.config,
                           chunking=self.chunking, loss_form=self.loss_form, with_targets=with_targets,
                           over_ranks=True)

    def padded_inputs(self, model_output, targets: Tensor) -> tuple[Tensor, Tensor, Tensor, Grid]:
        """(raw [B, A, 5 + C], gt [B, G, 5], gt_mask [B, G], grid) from per-level predictions and [N, 6] targets,
        validated first when ``validate``."""
        predictions = unwrap_model_output(model_output)
        batch, shapes = predictions[0].shape[0], level_shapes(predictions)
        if self.validate:
            check_predictions(predictions, self.config.strides, self.config.num_classes)
            check_targets(targets, batch, self.config.num_classes, device=predictions[0].device,
                          box_format=self.config.box_format)
            self._misreadings.check(targets[:, 2:6], image_size(shapes, self.config.strides), self.config.box_format)
            if self.max_gt is not None:
                check_target_counts(targets, batch, self.max_gt)
        gt, gt_mask = pad_targets(targets, batch, self.max_gt, validate=False)
        return (flatten_levels(predictions), gt, gt_mask,
                make_grid(shapes, self.config.strides, device=predictions[0].device))


class PaddedYoloXLoss(nn.Module):
    """The exported graph: fixed levels, inputs (predictions [B, A, 5 + C], targets [B, G, 5], target_mask [B, G]).

    Returns (fg_mask, matched_gt, matched_iou, loss_components, image_loss [B]), with ``with_targets`` also
    (cls_target, obj_target, reg_target, l1_target), then (target_k, target_cells) int64 [B, G] (each target's
    dynamic k and kept cells, 0 at masked slots: the audit's, ``select.TargetCounts``; every graph of the contract
    has them, ``with_audit=False`` drops them only for the benchmark that measures their cost), and with ``with_grad``
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
                 with_grad: bool = False, with_audit: bool = True):
        super().__init__()
        self.config = config
        self.chunking = Chunking(max_memory_mib, targets_per_chunk)
        self.shapes = [tuple(s) for s in shapes]
        self.with_targets = check_flag("with_targets", with_targets)
        self.with_grad = check_flag("with_grad", with_grad)
        self.with_audit = check_flag("with_audit", with_audit)
        grid = make_grid(self.shapes, config.strides)
        self.register_buffer("x_shifts", grid.x_shifts, persistent=False)
        self.register_buffer("y_shifts", grid.y_shifts, persistent=False)
        self.register_buffer("strides", grid.strides, persistent=False)

    @property
    def max_memory_mib(self) -> float | None:
        return self.chunking.max_memory_mib

    @property
    def targets_per_chunk(self) -> int | None:
        return self.chunking.targets_per_chunk

    @property
    def num_cells(self) -> int:
        return int(self.strides.shape[0])

    def forward(self, predictions: Tensor, targets: Tensor, target_mask: Tensor):
        grid = Grid(self.x_shifts, self.y_shifts, self.strides, tuple(self.shapes))
        options = dict(chunking=self.chunking, with_targets=self.with_targets, audit=self.with_audit)
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
        if self.with_audit:
            outputs += (a.counts.k, a.counts.cells)  # target_k, target_cells [B, G]
        return outputs + gradient

