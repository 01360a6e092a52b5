"""The loss's binary cross-entropy terms, in the eager and the export-safe form, and per-image sums.

Shape legend: B batch, A cells, F matched-cell buffer (``buffer.matched_capacity``), C classes.

Eager (and ``torch.compile``) evaluation uses torch's own ``binary_cross_entropy_with_logits``, the function the
references call; under ONNX export the same BCE is written out with a Log-only log1p (ONNX has no Log1p; the
exporter's log(1 + e) loses ~1e-5 relative on background logits near -4.6). Against the references' [n, C] layout,
the matched-cell buffer gives the same terms to float32 rounding (summation order, and an element's last bit now and
then where CPU kernels switch between vector and scalar code at a tensor's end).
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


def class_bce(logits: Tensor, classes: Tensor, ious: Tensor, valid: Tensor) -> Tensor:
    """[B]: each image's sum over the buffer's valid entries of sum_c BCE(x_c, one-hot(k) * iou), the references'
    class term: logits [B, F, C] (``matched_logits``), the matched target's class ``classes`` int64 [B, F] and IoU
    ``ious`` [B, F]."""
    onehot = classes.unsqueeze(-1) == torch.arange(logits.shape[-1], device=classes.device)  # [B, F, C]
    target = onehot.to(logits.dtype) * ious.unsqueeze(-1)  # [B, F, C]
    term = bce_with_logits(logits, target)
    return image_sums(torch.where(valid.unsqueeze(-1), term, torch.zeros_like(term)))
