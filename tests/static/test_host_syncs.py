"""Issue #13 item 1, the padding part (done with issue #12): with ``max_gt`` fixed and ``validate=False`` nothing
is read back to the host, neither by ``pad_targets`` nor by the drop-in forward and backward, in every mode.

``HostSyncs`` records every dispatched op that reads a value back (``_local_scalar_dense``: ``.item()``,
``int(tensor)``, ``bool(tensor)``) or whose output shape depends on the data (``nonzero``, ``masked_select``,
``unique``, ``bincount``), and ``lift_fresh`` of more than a scalar: a tensor made from host data
(``torch.tensor([...])``), a host-to-device copy on a GPU, which CUDA graph capture refuses (a 0-dim one is how torch
passes a Python number, ``t[index] = True``, and is left out). On the CPU these cost nothing, but they are the ops
that sync a GPU and break graphs.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from yolox_export import StaticYoloXLoss, pad_targets

from support import for_mode
from yolox_export.config import MODES

SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "bincount", "lift_fresh")
STRIDES = (8, 16, 32)
NUM_CLASSES = 3
TARGETS = torch.tensor([[0, 1, 20.0, 20.0, 16.0, 12.0],
                        [1, 2, 40.0, 30.0, 20.0, 24.0],
                        [1, 0, 70.0, 40.0, 30.0, 20.0],
                        [1, 1, 50.0, 50.0, 10.0, 10.0]])


class HostSyncs(TorchDispatchMode):
    """Records the names of the syncing ops dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name.startswith(SYNCING) and not (name.startswith("lift_fresh") and args[0].dim() == 0):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def levels():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn((2, 1, 64 // s, 96 // s, 5 + NUM_CLASSES), generator=gen).requires_grad_(True) for s in STRIDES]


def test_the_detector_sees_syncs():
    with HostSyncs() as syncs:
        pad_targets(TARGETS, 2, validate=False)  # max_gt=None must read the largest count back
        torch.tensor([1.0, 0.0]).nonzero()
    assert syncs.seen == ["_local_scalar_dense", "lift_fresh", "nonzero"]


@pytest.mark.parametrize("max_gt", (2, 3, 8))  # 2: image 1 overflows (3 targets) and gets a NaN slot, no error
def test_pad_targets_with_max_gt_fixed(max_gt):
    with HostSyncs() as syncs:
        pad_targets(TARGETS, 2, max_gt=max_gt, validate=False)
    assert syncs.seen == []


@pytest.mark.parametrize("max_memory_mib", (None, 1e-6))  # 1e-6: one target per chunk (static/chunks.py)
@pytest.mark.parametrize("mode", MODES)
def test_drop_in_forward_and_backward(mode, max_memory_mib):
    module = StaticYoloXLoss(STRIDES, NUM_CLASSES, mode=mode, max_gt=4, validate=False, max_memory_mib=max_memory_mib)
    predictions, targets = levels(), for_mode(TARGETS, mode)
    with HostSyncs() as syncs:
        loss, components = module(predictions, targets)
        loss.backward()
    assert syncs.seen == []
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in predictions)
