"""The exported graph's interface, one definition for the exporter, the runners, parity and the benchmark.

Inputs: ``predictions`` float32 [B, A, 5 + C] (raw head outputs, levels flattened by :func:`flatten_levels`),
``targets`` float32 [B, G, 5] (class, then the box in pixels in the mode's format: cx, cy, w, h, or x1, y1, x2, y2 in
mmdet mode; the graph's metadata says which: ``box_format``, ``targets_row``), ``target_mask`` bool [B, G]. Outputs,
in this order (``output_names``): ``fg_mask`` bool [B, A], ``matched_gt`` int64 [B, A] (-1 background),
``matched_iou`` float32 [B, A], ``loss_components`` float32 [6] (``COMPONENT_NAMES``), ``image_loss`` float32 [B]
(each image's share of the loss: it sums to the loss); with targets also ``cls_target`` [B, A, C], ``obj_target``
[B, A], ``reg_target`` [B, A, 4], ``l1_target`` [B, A, 4]; then, in every graph, the per-target audit
(``AUDIT_OUTPUT_NAMES``, docs/audit.md): ``target_k`` int64 [B, G] (each target's dynamic k, 0 where nothing is
ranked for it) and ``target_cells`` int64 [B, G] (the cells whose ``matched_gt`` is that slot), both 0 at masked
slots; with the gradient (``with_grad``) last ``predictions_grad`` float32 [B, A, 5 + C], d loss / d predictions.
Shape legend: B batch, A cells, G padded targets, C classes.

``CONTRACT_VERSION`` numbers this interface; the graph's metadata carries it (``contract_version``). Version 2
added ``target_k`` and ``target_cells``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from ..box_format import CENTRE_SIZE, BoxFormat
from ..config import check_flag
from ..grid import flatten_levels
from ..targets import pad_targets

INPUT_NAMES = ("predictions", "targets", "target_mask")
OUTPUT_NAMES = ("fg_mask", "matched_gt", "matched_iou", "loss_components", "image_loss")
TARGET_OUTPUT_NAMES = ("cls_target", "obj_target", "reg_target", "l1_target")
AUDIT_OUTPUT_NAMES = ("target_k", "target_cells")
GRAD_OUTPUT_NAMES = ("predictions_grad",)
#: The interface's version, in the graph's metadata (``contract_version``): 2 since ``AUDIT_OUTPUT_NAMES``.
CONTRACT_VERSION = 2


def output_names(with_targets: bool = False, with_grad: bool = False, with_audit: bool = True) -> tuple[str, ...]:
    """The graph's outputs in order: ``OUTPUT_NAMES``, then ``TARGET_OUTPUT_NAMES`` with targets, then
    ``AUDIT_OUTPUT_NAMES`` (every graph of the contract; ``with_audit=False`` only for the benchmark's graph that
    measures what they cost), then ``GRAD_OUTPUT_NAMES`` with the gradient."""
    return (OUTPUT_NAMES + (TARGET_OUTPUT_NAMES if with_targets else ()) + (AUDIT_OUTPUT_NAMES if with_audit else ())
            + (GRAD_OUTPUT_NAMES if with_grad else ()))


def check_feeds(feeds: Mapping[str, object], num_cells: int, num_classes: int) -> None:
    """Feeds against the contract of a graph with ``num_cells`` cells A and ``num_classes`` classes C: every input
    present (no other), a torch tensor of its dtype and rank, A and 5 + C and the 5 target columns as given, one B
    and one G across the inputs, and G >= 1 (``check_target_axis``). ValueError / TypeError naming the input."""
    expected = {"predictions": (torch.float32, (None, num_cells, 5 + num_classes), "[B, A, 5 + C]"),
                "targets": (torch.float32, (None, None, 5), "[B, G, 5]"),
                "target_mask": (torch.bool, (None, None), "[B, G]")}
    unexpected = sorted(set(feeds) - set(expected))
    missing = [name for name in expected if name not in feeds]
    if missing or unexpected:
        raise ValueError(f"inputs are {list(expected)}: missing {missing}, unexpected {unexpected}")
    for name, (dtype, shape, legend) in expected.items():
        value = feeds[name]
        if not isinstance(value, Tensor):
            raise TypeError(f"input {name!r}: expected a torch.Tensor, got {type(value).__name__}")
        if value.dtype != dtype:
            raise TypeError(f"input {name!r}: expected dtype {dtype}, got {value.dtype}")
        if value.dim() != len(shape) or any(want is not None and want != got for want, got in zip(shape, value.shape)):
            wanted = [("?" if d is None else d) for d in shape]
            raise ValueError(f"input {name!r}: expected shape {legend} = {wanted}, got {list(value.shape)}")
    batch = {name: int(feeds[name].shape[0]) for name in expected}
    if len(set(batch.values())) > 1:
        raise ValueError(f"inputs disagree on the batch size B: {batch}")
    if feeds["targets"].shape[1] != feeds["target_mask"].shape[1]:
        raise ValueError(f"inputs disagree on G: targets {list(feeds['targets'].shape)}, target_mask "
                         f"{list(feeds['target_mask'].shape)}")
    check_target_axis(feeds)


def check_target_axis(feeds: Mapping[str, object]) -> None:
    """ValueError when the feeds' target axis G (axis 1 of ``targets`` / ``target_mask``) is empty: the contract is
    G >= 1 (``pad_targets`` gives an image without targets one masked slot), and a runtime would otherwise fail
    deep inside the graph. B = 0 is allowed (an empty result, as in eager). Reads shapes only."""
    for name in ("targets", "target_mask"):
        shape = getattr(feeds.get(name), "shape", None)
        if shape is not None and len(shape) >= 2 and shape[1] == 0:
            raise ValueError(f"input {name!r} has G = 0 target slots (shape {list(shape)}); the graph takes G >= 1: "
                             "give an image without targets one masked slot (pad_targets does)")


def graph_feeds(predictions: Sequence[Tensor], targets: Tensor, max_gt: int | None = None,
                validate: bool = True, box_format: BoxFormat = CENTRE_SIZE, numpy: bool = False) -> dict:
    """The graph's inputs for per-level predictions [B, 1, H, W, 5 + C] and [N, 6] targets (boxes in the graph's
    mode's ``box_format``, which ``validate`` checks): predictions flattened to [B, A, 5 + C] float32, targets padded
    by ``pad_targets`` to G = ``max_gt``, or the largest per-image count (at least 1: one masked slot stands for
    "no targets").

    Torch tensors by default (for the runners); with ``numpy=True`` detached CPU numpy arrays of the same dtypes
    (float32, float32, bool), the feeds ``onnxruntime.InferenceSession.run`` takes."""
    raw = flatten_levels(list(predictions)).float()
    gt, mask = pad_targets(targets, raw.shape[0], max_gt, validate=validate, box_format=box_format)
    feeds = dict(zip(INPUT_NAMES, (raw, gt.float(), mask)))
    if check_flag("numpy", numpy):
        return {name: value.detach().cpu().numpy() for name, value in feeds.items()}
    return feeds
