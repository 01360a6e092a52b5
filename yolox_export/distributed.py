"""num_fg synchronisation across ranks (fast mode's ``sync_num_fgs``), the same in the reference and the static
module: a SUM all-reduce divided by the world size (``ReduceOp.AVG`` exists only on NCCL)."""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def synced_num_fg(num_fg: Tensor) -> Tensor:
    """``num_fg`` (a float tensor) averaged over the default process group's ranks; as is without one."""
    if not (dist.is_available() and dist.is_initialized()):
        return num_fg
    total = num_fg.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()
