"""Peak extra memory of one measured call: resident-set high-water mark on the CPU, torch's allocator on CUDA
(method: see the ``bench`` package docstring)."""

from __future__ import annotations

import ctypes
import gc
import resource
from pathlib import Path

import torch

from .subjects import Subject

MEMORY_METHOD = ("VmHWM - VmRSS around the measured call (RSS high-water mark reset via /proc/self/clear_refs, "
                 "heap trimmed with malloc_trim first)")
MEMORY_FALLBACK = "ru_maxrss(after) - VmRSS(before) (upper bound: clear_refs unavailable)"
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated - memory_allocated (after reset_peak_memory_stats)"


def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssMeter:
    """Peak extra resident memory of one call (see the module docstring)."""

    def __init__(self) -> None:
        self.method = MEMORY_METHOD
        self._baseline = 0
        self._reset = False

    def start(self) -> None:
        _trim_heap()
        self._baseline = (_proc_status_kb("VmRSS") or 0) * 1024
        self._reset = _reset_peak_rss()
        self.method = MEMORY_METHOD if self._reset else MEMORY_FALLBACK

    def stop(self) -> int:
        peak_kb = _proc_status_kb("VmHWM") if self._reset else None
        if peak_kb is None:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, peak_kb * 1024 - self._baseline)


class CudaMeter:
    """Peak extra CUDA memory allocated through torch during one call."""

    method = CUDA_MEMORY_METHOD

    def start(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self._baseline = torch.cuda.memory_allocated()

    def stop(self) -> int:
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - self._baseline)


def make_meter(subject: Subject):
    if subject.device == "cpu":
        return RssMeter()
    return None if subject.family == "ort" else CudaMeter()
