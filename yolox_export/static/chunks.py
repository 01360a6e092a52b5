"""The assignment's targets in chunks under a memory budget.

Shape legend: B batch, G padded targets, X the cells a target is ranked over (A in the dense form, M union slots in
the windowed form), Gc the targets of one chunk.

The assignment's working set grows with G: the dense and windowed forms hold several [B, G, X] tensors at once.
Every step of SimOTA but the contested-cell argmin (and regular / megvii's union of candidates) is per target, so the
targets can be taken a chunk of Gc at a time, holding [B, Gc, X] tensors; ``select.Contest`` carries the
cross-target reductions across chunks exactly, so the assignment does not depend on the chunking, bit for bit.

The budget bounds that working set only. What does not grow with G stays outside it: the inputs, the gradients, the
[B, A, C] class probabilities and the loss terms over the matched cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

#: Bytes the assignment holds per (image, target, ranked cell) at its peak within a chunk: at most about 10 float32
#: [B, Gc, X] tensors live at once (fast mode's dense form, the largest: measured 6 to 10 by ``yolox-export bench``),
#: plus boolean masks; 48 leaves room.
BYTES_PER_TARGET_CELL = 48
#: The default budget, in MiB, for the [B, Gc, X] working set: at B=16, 640x640 (A = 8400) a chunk of 83 targets.
DEFAULT_MAX_MEMORY_MIB = 256
#: The largest budget, in MiB: 2**40 MiB (1 EiB, 2**60 bytes), beyond any machine's memory, so that the budget in
#: bytes stays an int64 and a float computation of it never overflows; for no budget give None (unchunked).
MAX_MEMORY_MIB = 2**40


def checked_budget(max_memory_mib) -> float | None:
    """``max_memory_mib`` if it is a number in (0, :data:`MAX_MEMORY_MIB`] or None (unchunked); ValueError
    otherwise (a non-number, NaN, inf, 1e308 and 10**400 included)."""
    if max_memory_mib is None:
        return None
    if isinstance(max_memory_mib, bool) or not isinstance(max_memory_mib, (int, float)):
        raise ValueError(f"max_memory_mib must be a number of MiB in (0, 2**40] or None (unchunked), got "
                        f"{type(max_memory_mib).__name__} {max_memory_mib!r}")
    if not 0 < max_memory_mib <= MAX_MEMORY_MIB:  # false for NaN; compares huge ints without converting them
        shown = max_memory_mib if isinstance(max_memory_mib, float) or abs(max_memory_mib) < 10**30 else \
            f"an integer of {len(str(abs(max_memory_mib)))} digits"
        raise ValueError(f"max_memory_mib must be a number of MiB in (0, 2**40] (2**40 MiB = 1 EiB) or None "
                         f"(unchunked), got {shown}")
    return float(max_memory_mib)


def targets_per_chunk(max_memory_mib: float | None, batch: int, width: int) -> int | None:
    """Gc for a budget of ``max_memory_mib`` MiB over [B, Gc, X] (``width`` = X); at least 1 (a budget smaller
    than one target's chunk runs one target at a time); None without a budget, or when B or X is symbolic (a traced
    graph with dynamic axes keeps one formulation: reading the size would fix the axis)."""
    if max_memory_mib is None or not (isinstance(batch, int) and isinstance(width, int)):
        return None
    per_target = max(batch * width * BYTES_PER_TARGET_CELL, 1)
    return max(1, int(max_memory_mib * 2**20) // per_target)


@dataclass(frozen=True)
class Chunking:
    """How the assignment takes its targets, fixed once where a module is built: chunks whose [B, Gc, X] working set
    fits ``max_memory_mib`` MiB (None: unchunked), or, when given, ``targets_per_chunk`` targets per chunk (a fixed
    Gc: needs a static G, as an export with G fixed has). Both are checked here."""

    max_memory_mib: float | None = DEFAULT_MAX_MEMORY_MIB
    targets_per_chunk: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_memory_mib", checked_budget(self.max_memory_mib))
        per_chunk = self.targets_per_chunk
        if per_chunk is not None and (isinstance(per_chunk, bool) or not isinstance(per_chunk, int) or per_chunk < 1):
            raise ValueError(f"targets_per_chunk must be an int >= 1 or None, got {per_chunk!r}")

    def per_chunk(self, batch, width) -> int | None:
        """Gc for [B, Gc, X] tensors of ``batch`` images and ``width`` ranked cells (``targets_per_chunk``)."""
        if self.targets_per_chunk is not None:
            return self.targets_per_chunk
        return targets_per_chunk(self.max_memory_mib, batch, width)


#: Every target at once.
UNCHUNKED = Chunking(max_memory_mib=None)

#: The span of every target at once.
WHOLE = (0, None)


def target_spans(num_targets, per_chunk: int | None) -> list[tuple[int, int | None]]:
    """[(start, stop)] of each chunk of the G targets; ``[WHOLE]`` without a budget, when one chunk holds every
    target, or when G is symbolic (an exported graph keeps one formulation for every G).

    The spans come from shapes only (G as a Python int, Gc from the budget and static sizes), never from tensor
    values: the loop over them is unrolled when traced, so the graph stays free of data-dependent control flow and
    shapes; a symbolic G gets the single span."""
    if per_chunk is None or not isinstance(num_targets, int) or per_chunk >= num_targets:
        return [WHOLE]
    return [(start, min(start + per_chunk, num_targets)) for start in range(0, num_targets, per_chunk)]


def targets_of(tensor: Tensor, span: tuple[int, int | None]) -> Tensor:
    """``tensor`` [B, G, ...] restricted to the span's targets (the tensor itself for ``WHOLE``)."""
    start, stop = span
    return tensor if stop is None else tensor[:, start:stop]
