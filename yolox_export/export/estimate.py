"""What an unrolled chunked export costs, before it runs.

An export with G fixed and ``targets_per_chunk`` = N (``export_onnx``) unrolls ceil(G / N) copies of the assignment
into the graph: the export's time grows faster than linearly with the chunk count, its file linearly. The estimate
is a fit to exports measured on the project's 2-core development machine (one torch thread; docs/ lists the
measurements, their date and machine); another machine scales the time, not the size. Past
:data:`MAX_UNROLLED_CHUNKS` chunks an export is refused unless asked for (``allow_large_export``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .presets import Preset

#: Chunks an unrolled export may have without ``allow_large_export`` (``--allow-large-export``).
MAX_UNROLLED_CHUNKS = 32

#: seconds = factor[mode] * (BASE + LINEAR * chunks + QUADRATIC * chunks**2): fit to the fast mode's exports of
#: 1, 2, 4, 8 and 16 chunks at 64x64, 3 classes; the factor is each mode's 4-chunk time over fast mode's.
BASE_SECONDS, SECONDS_PER_CHUNK, SECONDS_PER_CHUNK_SQUARED = 9.6, 1.05, 0.16
MODE_TIME_FACTOR = {"fast": 1.0, "megvii": 1.3, "regular": 1.9, "mmdet": 1.7}
#: bytes = BASE_BYTES + per_chunk[mode] * chunks (nearly independent of the image size: 64x64 and 128x128 differ
#: by 3%).
BASE_BYTES = 270_000
BYTES_PER_CHUNK = {"fast": 229_000, "megvii": 266_000, "regular": 308_000, "mmdet": 296_000}


@dataclass(frozen=True)
class ExportEstimate:
    """An unrolled export's chunk count and estimated time and file size."""

    max_gt: int
    targets_per_chunk: int
    chunks: int
    seconds: float
    bytes: int

    @property
    def over_limit(self) -> bool:
        return self.chunks > MAX_UNROLLED_CHUNKS

    def __str__(self) -> str:
        return (f"G = {self.max_gt} targets in chunks of {self.targets_per_chunk}: {self.chunks} chunk(s) unrolled; "
                f"estimated {_duration(self.seconds)} and {self.bytes / 1e6:.1f} MB (from exports measured on a "
                f"2-core CPU; a slower machine takes longer)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def chunked_export_estimate(preset: Preset, targets_per_chunk: int) -> ExportEstimate:
    """The estimate for exporting ``preset`` (max_gt fixed: min = opt = max) in chunks of ``targets_per_chunk``.

    Raises:
        ValueError: ``targets_per_chunk`` not an integer >= 1, or a max_gt range that is not one value."""
    if isinstance(targets_per_chunk, bool) or not isinstance(targets_per_chunk, int) or targets_per_chunk < 1:
        raise ValueError(f"targets_per_chunk must be an integer >= 1, got {targets_per_chunk!r}")
    low, opt, high = preset.max_gt
    if low != high:
        raise ValueError(f"targets_per_chunk needs a fixed max_gt (min = opt = max, e.g. 700:700:700), got "
                         f"{low}:{opt}:{high}: a dynamic G keeps one formulation for every G")
    chunks = math.ceil(high / targets_per_chunk)
    seconds = MODE_TIME_FACTOR[preset.mode] * (BASE_SECONDS + SECONDS_PER_CHUNK * chunks
                                               + SECONDS_PER_CHUNK_SQUARED * chunks**2)
    return ExportEstimate(high, targets_per_chunk, chunks, seconds, BASE_BYTES + BYTES_PER_CHUNK[preset.mode] * chunks)


def check_export_size(estimate: ExportEstimate, allow_large_export: bool) -> None:
    """ValueError when ``estimate`` is over :data:`MAX_UNROLLED_CHUNKS` chunks and that was not allowed."""
    if estimate.over_limit and not allow_large_export:
        raise ValueError(f"targets_per_chunk: {estimate}; that is over the limit of {MAX_UNROLLED_CHUNKS} chunks: "
                         "give a larger targets_per_chunk, or allow_large_export=True to export it anyway")
