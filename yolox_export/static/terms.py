"""The loss's element-wise terms and the compaction of matched cells, shared by every mode of the static loss.

Shape legend: B batch, A cells, G padded targets, C classes, F matched-cell buffer (``matched_capacity``).

These are the static graph's form of the loss terms (the synchronising drop-in calls the references' own
``matched_loss`` instead). Eager (and ``torch.compile``) evaluation uses torch's own
``binary_cross_entropy_with_logits``, the function the references call; under ONNX export the same BCE is written
out with a Log-only log1p (ONNX has no Log1p; the exporter's log(1 + e) loses ~1e-5 relative on background logits
near -4.6). Against the references' [n, C] layout, the matched-cell buffer gives the same terms to float32
rounding (summation order, and an element's last bit now and then where CPU kernels switch between vector and
scalar code at a tensor's end).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .export_form import exporting


def log1p(y: Tensor) -> Tensor:
    """log(1 + y) to float32 accuracy from Log alone: Kahan's log(u) * y / (u - 1), u = 1 + y.

    The correction y / (u - 1) is within rounding of 1 and is held constant for autograd, so the gradient is
    ratio / u = 1 / (1 + y) to float32 accuracy instead of differentiating rounding noise."""
    u = 1.0 + y
    shifted = u - 1.0
    ratio = (y / torch.where(shifted == 0, torch.ones_like(shifted), shifted)).detach()
    return torch.where(shifted == 0, y, torch.log(u) * ratio)


def exportable_bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Element-wise BCE with logits as torch computes it, max(x, 0) - x * z + log1p(exp(-|x|)), from ONNX ops."""
    return logits.clamp(min=0) - logits * target + log1p(torch.exp(-logits.abs()))


def bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Element-wise BCE with logits: torch's kernel in eager, ``exportable_bce_with_logits`` under ONNX export."""
    if exporting():
        return exportable_bce_with_logits(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def image_sums(values: Tensor) -> Tensor:
    """[B]: each image's sum of a [B, A, ...] tensor, reduced axis by axis from the last, so that a backend that
    accumulates a reduction sequentially adds chains of length A rather than A·... (shorter chains, smaller float32
    error). The loss's terms are the sums of these [B] vectors, so each image's share falls out of the same sums."""
    while values.dim() > 1:
        values = values.sum(-1)
    return values


def matched_capacity(cells: int, slots: int, max_dynamic_k: int) -> int:
    """F: an upper bound on an image's matched cells, min(A, max_dynamic_k * G). Each real target is matched to at
    most its dynamic k cells (a contested cell goes to one target and is never added to another), dynamic k never
    exceeds ``config.max_dynamic_k``, and there are at most G real targets; so the bound holds for every input."""
    return max(1, min(cells, max_dynamic_k * slots))


def matched_cells(fg_mask: Tensor, capacity: int) -> tuple[Tensor, Tensor]:
    """(cells int64 [B, F], valid bool [B, F]): each image's matched cells in cell order, packed to the front of a
    buffer of ``capacity`` F entries (``matched_capacity``); entries past the image's count are cell 0, not valid.

    Static shapes only: a cell's rank among its image's matched cells is a cumulative sum (float32, exact below 2^24
    cells), and the cells are scattered to their ranks; unmatched cells all go to one spare column that is dropped.
    """
    batch, cells = fg_mask.shape
    fg = fg_mask.to(torch.float32)
    rank = (fg.cumsum(1) - 1.0).long()  # [B, A]
    destination = torch.where(fg_mask, rank, torch.full_like(rank, capacity))  # [B, A]
    cell_index = torch.arange(cells, device=fg_mask.device).expand(batch, cells)  # [B, A]
    packed = torch.zeros((batch, capacity + 1), dtype=torch.long, device=fg_mask.device)
    packed = packed.scatter(1, destination, cell_index)[:, :capacity]  # [B, F]
    count = fg.sum(1, keepdim=True)  # [B, 1]
    valid = torch.arange(capacity, device=fg_mask.device, dtype=torch.float32) < count  # [B, F]
    return packed, valid  # ranks >= count were never written: cell 0


def at_cells(values: Tensor, cells: Tensor) -> Tensor:
    """``values`` [B, A, ...] at the cells [B, F] (cell indices per image: the matched-cell buffer's, or the megvii
    windows' slots): [B, F, ...]."""
    index = cells.reshape(*cells.shape, *([1] * (values.dim() - 2))).expand(*cells.shape, *values.shape[2:])
    return values.gather(1, index)


class _GatherRows(torch.autograd.Function):
    """``at_cells`` whose backward scatters without a reduction (see ``gather_rows``)."""

    @staticmethod
    def forward(ctx, values: Tensor, cells: Tensor, valid: Tensor) -> Tensor:
        ctx.save_for_backward(cells, valid)
        ctx.cells = values.shape[1]
        return at_cells(values, cells)

    @staticmethod
    def backward(ctx, grad: Tensor):
        cells, valid = ctx.saved_tensors
        spare = ctx.cells
        destination = torch.where(valid, cells, torch.full_like(cells, spare))  # [B, F]
        index = destination.unsqueeze(-1).expand(grad.shape)  # [B, F, D]
        shape = (grad.shape[0], spare + 1, grad.shape[-1])
        scattered = grad.new_zeros(shape).scatter(1, index, grad)  # [B, A + 1, D]
        return scattered[:, :spare], None, None


def gather_rows(values: Tensor, cells: Tensor, valid: Tensor) -> Tensor:
    """``at_cells(values, cells)`` for values [B, A, D] at the matched-cell buffer's cells [B, F] (``valid`` [B, F]
    marks its used entries), with a backward that writes each used entry's gradient row to its cell and every
    unused entry's to one spare row that is dropped, a scatter without reduction: the used entries of an image are
    distinct cells (``matched_cells``), so no two writes meet where it matters. Autograd's own backward of a gather
    is a scatter-add (ONNX ScatterElements with reduction "add"), which TensorRT's parser refuses; this one keeps the
    gradient graph (``export.grad_graph``) parseable. The two agree because the loss terms mask the unused entries
    (``torch.where``), so their gradient is zero, which autograd would add to cell 0 and this drops."""
    return _GatherRows.apply(values, cells, valid)


class _Columns(torch.autograd.Function):
    """``values[..., start:stop]`` whose backward pads (see ``columns``)."""

    @staticmethod
    def forward(ctx, values: Tensor, start: int, stop: int) -> Tensor:
        ctx.pads = (start, values.shape[-1] - stop)
        return values[..., start:stop]

    @staticmethod
    def backward(ctx, grad: Tensor):
        return F.pad(grad, ctx.pads), None, None


def columns(values: Tensor, start: int, stop: int) -> Tensor:
    """``values[..., start:stop]`` (a copy), with a backward that pads the slice's gradient with zeros on the last
    axis (one Pad in the gradient graph, ``export.grad_graph``). Autograd's own backward of a slice is a
    ``slice_scatter``, which the ONNX exporter writes as a Transpose of the whole [B, A, 5 + C] gradient, a
    ScatterND and a Transpose back: 230 ms of the regular-mode gradient graph's 415 ms under onnxruntime at B=16,
    640x640, C=80 (a one-off profile)."""
    return _Columns.apply(values, start, stop)


def matched_logits(raw: Tensor, box_logits: Tensor, cls_logits: Tensor, cells: Tensor,
                   valid: Tensor) -> tuple[Tensor, Tensor]:
    """(box [B, F, 4], class [B, F, C]) logits at the buffer's cells, carrying the gradient to ``raw``
    [B, A, 5 + C].

    The box logits of the buffer's unused entries are 0: those entries read cell 0, whose huge box logit would
    decode to an infinite box, and the masked term's zero gradient times that box's NaN derivative would reach
    cell 0 as NaN. Under ONNX export whole rows of ``raw`` are gathered once and sliced ([B, F, 5 + C]: a Slice of
    the [B, A, C] class logits would copy them on every call, 43 MB at B=16, 640x640, C=80); eager gathers from the
    split's pieces ``box_logits`` [B, A, 4] and ``cls_logits`` [B, A, C], so that backward assembles the
    [B, A, 5 + C] gradient once. The values are the same either way.
    """
    if exporting():
        rows = gather_rows(raw, cells, valid)  # [B, F, 5 + C]
        box, cls = rows[..., :4], rows[..., 5:]
    else:
        box, cls = at_cells(box_logits, cells), at_cells(cls_logits, cells)
    return torch.where(valid.unsqueeze(-1), box, torch.zeros_like(box)), cls


def class_bce(logits: Tensor, classes: Tensor, ious: Tensor, valid: Tensor) -> Tensor:
    """[B]: each image's sum over the buffer's valid entries of sum_c BCE(x_c, one-hot(k) * iou), the references'
    class term: logits [B, F, C] (``matched_logits``), the matched target's class ``classes`` int64 [B, F] and IoU
    ``ious`` [B, F]."""
    onehot = classes.unsqueeze(-1) == torch.arange(logits.shape[-1], device=classes.device)  # [B, F, C]
    target = onehot.to(logits.dtype) * ious.unsqueeze(-1)  # [B, F, C]
    term = bce_with_logits(logits, target)
    return image_sums(torch.where(valid.unsqueeze(-1), term, torch.zeros_like(term)))
