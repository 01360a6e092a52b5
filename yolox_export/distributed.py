"""num_fg across ranks: fast mode's ``sync_num_fgs`` (the count clamped at 1, then averaged) and mmdetection's
``max(reduce_mean(num_pos), 1)`` (averaged, then clamped), the same in the references and the static module.
Without an initialised default process group both are the local count clamped at 1."""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor

from .config import LossConfig


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def synced_num_fg(num_fg: Tensor) -> Tensor:
    """``num_fg`` (a float tensor) averaged over the default process group's ranks, as super-gradients does: a SUM
    all-reduce divided by the world size (``ReduceOp.AVG`` exists only on NCCL); as is without a group."""
    if not _initialised():
        return num_fg
    total = num_fg.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


def reduce_mean(value: Tensor) -> Tensor:
    """mmdetection's ``reduce_mean``: each rank's value divided by the world size, then a SUM all-reduce; as is
    without a group."""
    if not _initialised():
        return value
    share = value.clone().div_(dist.get_world_size())
    dist.all_reduce(share, op=dist.ReduceOp.SUM)
    return share


def batch_num_fg(count: Tensor, config: LossConfig, over_ranks: bool = True) -> Tensor:
    """The loss's divisor from the batch's matched-cell count (a float tensor): max(count, 1), averaged over the
    ranks where the mode does so (``config.averages_num_fg``), the caller is an eager drop-in (``over_ranks``: the
    exported graph never is) and a default process group is initialised: mmdet averages the raw count and clamps
    afterwards (``ModeRules.positives_over_ranks``), fast clamps first."""
    if not (over_ranks and config.averages_num_fg and _initialised()):
        return count.clamp(min=1.0)
    if config.rules.positives_over_ranks:
        return reduce_mean(count).clamp(min=1.0)
    return synced_num_fg(count.clamp(min=1.0))
