"""The matched-cell buffer: each image's matched cells packed into [B, F] in static shapes, and the outputs at them.

Shape legend: B batch, A cells, G padded targets, C classes, F matched-cell buffer (``matched_capacity``).

The static loss reads the class, box and L1 terms at the matched cells only, so no [B, A, C] or [B, A, 4] loss
tensor is built; the buffer's size comes from G, never from the data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .export_form import exporting


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
