"""The eager reference losses that the static module is proven against, and the registry of which one stands for
which mode: every tool (presets, export, parity, bench) reads ``REFERENCES`` / ``reference_for``, so a mode added
to ``config.MODES`` and here flows everywhere."""

from __future__ import annotations

from ..config import MODES, LossConfig
from .common import ReferenceLoss
from .fast import FastYoloXLoss
from .megvii import MegviiYoloXLoss
from .mmdet import MMDetYoloXLoss
from .regular import RegularYoloXLoss

#: mode -> the eager reference loss class of that mode.
REFERENCES: dict[str, type[ReferenceLoss]] = {"regular": RegularYoloXLoss, "fast": FastYoloXLoss,
                                              "megvii": MegviiYoloXLoss, "mmdet": MMDetYoloXLoss}


def reference_class(mode: str) -> type[ReferenceLoss]:
    """The reference loss class of ``mode``. Raises ValueError for a mode without one."""
    if mode not in REFERENCES:
        raise ValueError(f"no reference loss for mode {mode!r}; modes with one: {sorted(REFERENCES)} (all: {MODES})")
    return REFERENCES[mode]


def reference_for(config: LossConfig, **options) -> ReferenceLoss:
    """The eager reference loss of ``config.mode``, built from ``config`` (``options``: e.g. ``validate``)."""
    return reference_class(config.mode).from_config(config, **options)


__all__ = ["REFERENCES", "FastYoloXLoss", "MegviiYoloXLoss", "MMDetYoloXLoss", "ReferenceLoss", "RegularYoloXLoss", "reference_class", "reference_for"]
