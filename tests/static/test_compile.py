"""``torch.compile(module, fullgraph=True)`` of the drop-in forward (per-level list + ragged [N, 6] targets), with
``max_gt`` fixed and ``validate=False``: one graph, no break, in every mode, for changing target counts, and the
same loss, components and gradients as eager (float32: inductor fuses and reorders sums, so equality is to float32
rounding, rtol 1e-5 on values of order 1-100)."""

from __future__ import annotations

import pytest
import torch

from yolox_export import StaticYoloXLoss
from yolox_export.config import MODES
from yolox_export.scenarios import make_scenario

from support import box_format_of

STRIDES, CLASSES = (8, 16, 32), 5


def _batch(seed: int, count: int, mode: str):
    s = make_scenario("coco", batch_size=2, image_size=(128, 128), num_classes=CLASSES, strides=STRIDES, seed=seed,
                      box_format=box_format_of(mode))
    targets = s.targets[:count]
    assert targets.shape[0] == count  # the scenario has at least ``count`` targets
    return s.predictions, targets


def _loss_and_grads(module, predictions, targets):
    leaves = [p.detach().clone().requires_grad_(True) for p in predictions]
    loss, components = module(leaves, targets)
    loss.backward()
    return loss.detach(), components, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("mode", MODES)
def test_one_compiled_graph_for_changing_target_counts(mode):
    """N = 7, 0, 1, 12, 3: one frame compiled (the module marks N unbacked before dynamo guards on it, so 0 and 1
    are not specialised either)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    module = StaticYoloXLoss(STRIDES, CLASSES, mode=mode, max_gt=16, validate=False)
    compiled = torch.compile(module, fullgraph=True, backend=counter)
    predictions, targets = _batch(0, 12, mode)
    for count in (7, 0, 1, 12, 3):
        given = targets[:count]
        compiled(predictions, given)
        # the mark went on a view: the caller's tensor is not left marked for their own compiled code
        assert not hasattr(given, "_dynamo_unbacked_indices") and not hasattr(given, "_dynamo_dynamic_indices")
    assert counter.frame_count == 1


def test_compiled_drop_in_forward_is_one_graph_and_equals_eager_for_changing_target_counts(inductor_mode):
    """Inductor against eager, in support's INDUCTOR_MODES (every mode under --full)."""
    mode = inductor_mode
    torch._dynamo.reset()
    module = StaticYoloXLoss(STRIDES, CLASSES, mode=mode, max_gt=16, validate=False)
    compiled = torch.compile(module, fullgraph=True)  # fullgraph: any graph break raises
    for seed, count in ((0, 5), (1, 9), (2, 3)):
        predictions, targets = _batch(seed, count, mode)
        got = _loss_and_grads(compiled, predictions, targets)
        want = _loss_and_grads(module, predictions, targets)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-7)
        for g, w in zip(got[2], want[2]):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()))
