"""Totals of many audits: per class and per COCO size bucket, over the "ok" rows (real, ranked targets).

COCO's buckets by box area in pixels: small below 32^2, medium below 96^2, large from 96^2 on (area = w * h, from
corners (x2 - x1) * (y2 - y1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor

from ..box_format import BOX_FORMATS
from .result import OK, STATUSES, TargetAudit

#: (name, upper bound of the area in pixels, exclusive) of COCO's size buckets.
SIZE_BUCKETS = (("small", 32.0**2), ("medium", 96.0**2), ("large", float("inf")))


def box_areas(audit: TargetAudit) -> Tensor:
    """float64 [N]: each row's box area in pixels, read in its ``box_format``."""
    width, height = BOX_FORMATS[audit.box_format].extent(audit.box.double())
    return width * height


def size_buckets(audit: TargetAudit) -> list[str]:
    """Each row's COCO size bucket name."""
    return [next(name for name, bound in SIZE_BUCKETS if area < bound) for area in box_areas(audit).tolist()]


@dataclass
class Tally:
    """Counts of one group: targets ("ok" rows), starved, cells kept, cells asked for (sum of k), and rows set
    aside by status (not "ok")."""

    targets: int = 0
    starved: int = 0
    cells: int = 0
    asked: int = 0
    other: dict = field(default_factory=dict)

    @property
    def starved_share(self) -> float:
        return self.starved / self.targets if self.targets else 0.0


@dataclass
class Totals:
    """Tallies per class id and per size bucket, and over everything."""

    by_class: dict = field(default_factory=dict)
    by_size: dict = field(default_factory=lambda: {name: Tally() for name, _ in SIZE_BUCKETS})
    overall: Tally = field(default_factory=Tally)
    batches: int = 0

    def add(self, audit: TargetAudit) -> None:
        """One batch's audit."""
        self.batches += 1
        sizes = size_buckets(audit)
        starved = audit.starved
        for i in range(len(audit)):
            status = int(audit.status[i])
            groups = (self.by_class.setdefault(int(audit.label[i]), Tally()), self.by_size[sizes[i]], self.overall)
            for tally in groups:
                if status != OK:
                    name = STATUSES[status]
                    tally.other[name] = tally.other.get(name, 0) + 1
                    continue
                tally.targets += 1
                tally.starved += int(starved[i])
                tally.cells += int(audit.cells[i])
                tally.asked += int(audit.k[i])

    def table(self) -> str:
        """Text: one line per size bucket, then per class (by id), then the whole."""
        head = f"{'group':<14} {'targets':>8} {'starved':>8} {'share':>7} {'cells':>8} {'asked':>8}  set aside"
        lines = [f"audit totals over {self.batches} batch(es); starved = an ok target with no cell", head]

        def line(name: str, t: Tally) -> str:
            aside = ", ".join(f"{k}: {v}" for k, v in sorted(t.other.items())) or "-"
            return (f"{name:<14} {t.targets:>8} {t.starved:>8} {100 * t.starved_share:>6.1f}% {t.cells:>8} "
                    f"{t.asked:>8}  {aside}")

        lines += [line(f"size {name}", self.by_size[name]) for name, _ in SIZE_BUCKETS]
        lines += [line(f"class {c}", self.by_class[c]) for c in sorted(self.by_class)]
        lines.append(line("all", self.overall))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def plain(t: Tally) -> dict:
            return {"targets": t.targets, "starved": t.starved, "cells": t.cells, "asked": t.asked,
                    "set_aside": dict(t.other)}

        return {"batches": self.batches, "size_buckets_px2": {n: b for n, b in SIZE_BUCKETS if b != float("inf")},
                "by_size": {n: plain(t) for n, t in self.by_size.items()},
                "by_class": {str(c): plain(t) for c, t in sorted(self.by_class.items())},
                "overall": plain(self.overall)}


def totals_of(audits: Iterable[TargetAudit]) -> Totals:
    totals = Totals()
    for audit in audits:
        totals.add(audit)
    return totals


def worst_images(audits: Iterable[TargetAudit], limit: int) -> list[tuple[int, int, int]]:
    """[(batch index, image, starved count)] of the ``limit`` images with the most starved targets (at least one),
    ties in batch and image order."""
    found = []
    for index, audit in enumerate(audits):
        starved = audit.starved
        for image in torch.unique(audit.image[starved]).tolist():
            found.append((index, int(image), int((starved & (audit.image == image)).sum())))
    found.sort(key=lambda item: (-item[2], item[0], item[1]))
    return found[:limit]
