"""Timing of one step: warm-up calls, then timed calls within a budget; median, inclusive quartiles, min, max."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .steps import Step


@dataclass
class Timing:
    times_s: list[float]
    peak_extra_bytes: int | None
    last_output: Any


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_step(step: Step, device: str, warmup: int, repeats: int, max_seconds: float, meter) -> Timing:
    """``warmup`` untimed calls, then between min(3, repeats) and ``repeats`` timed calls within ``max_seconds``."""
    memory_index = 0 if step.memory_on_first_call else warmup
    minimum, times, peak, output, spent = warmup + min(3, repeats), [], None, None, 0.0
    for index in range(warmup + repeats):
        if index >= minimum and spent >= max_seconds:
            break
        output = None
        step.reset()
        if meter is not None and index == memory_index:
            meter.start()
        _sync(device)
        start = time.perf_counter()
        output = step.call()
        _sync(device)
        elapsed = time.perf_counter() - start
        if meter is not None and index == memory_index:
            peak = meter.stop()
        if index >= warmup:
            times.append(elapsed)
            spent += elapsed
    return Timing(times, peak, output)


def summarise(times: Sequence[float]) -> dict[str, float | int | None]:
    """median, inclusive quartiles, min, max and n of ``times`` (seconds)."""
    if not times:
        return {"n": 0, "median_s": None, "q1_s": None, "q3_s": None, "min_s": None, "max_s": None}
    q1, q3 = (statistics.quantiles(times, n=4, method="inclusive")[::2] if len(times) > 1 else (times[0], times[0]))
    return {"n": len(times), "median_s": statistics.median(times), "q1_s": q1, "q3_s": q3,
            "min_s": min(times), "max_s": max(times)}
