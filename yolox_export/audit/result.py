"""The per-target audit's result: one row per target row of the input, its counts, its status and a table.

Shape legend: N rows (the input's target rows: [N, 6] targets, or every padded slot of a padded input). Boxes in
pixels, in the mode's box format (``box_format``: "cxcywh" or "xyxy"), as given.

Definitions (docs/audit.md holds them, each once): ``k`` the dynamic k the target asks for (0 when nothing is
ranked for it); ``selected`` the cells among its k cheapest; ``won`` the contested cells it got without selecting
them (union modes); ``lost`` the selected cells that went to another target; ``cells`` the cells whose matched
target it is, = selected - lost + won; ``starved`` an "ok" row with no cell; ``candidates`` its own candidate cells
under the mode's rule; ``cheapest`` its cheapest cost over them (penalty included; inf without any).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

#: The row statuses, in code order: a row whose status is not "ok" is never counted as starved.
STATUSES = ("ok", "masked", "malformed", "over capacity", "no candidates")
OK, MASKED, MALFORMED, OVER_CAPACITY, NO_CANDIDATES = range(len(STATUSES))
#: What each status means, for the table's legend and the docs.
STATUS_MEANINGS = {
    "ok": "a real target that was ranked",
    "masked": "a padding slot (mask False): not a target",
    "malformed": "set aside: a non-finite box, a size or extent the format forbids, a class id outside [0, C), or "
                 "an image index outside [0, B)",
    "over capacity": "its image has more targets than max_gt: slots max_gt - 1 on are given up",
    "no candidates": "nothing ranked for it: no candidate cell in its image (regular, megvii, mmdet) or of its own "
                     "(fast)",
}
#: Columns of the table, in order.
COLUMNS = ("row", "image", "class", "status", "k", "selected", "lost", "won", "cells", "candidates", "cheapest")


@dataclass
class TargetAudit:
    """Row i describes target row i of the input. Integer fields int64 [N]; ``box`` float32 [N, 4] (as given, in
    ``box_format``); ``cheapest`` float32 [N] (inf without an own candidate); ``status`` int64 [N], an index into
    ``STATUSES``; ``slot`` the row's padded slot, the index ``matched_gt`` names (-1: none); ``mode`` the
    assignment's mode."""

    image: Tensor
    slot: Tensor
    label: Tensor
    box: Tensor
    k: Tensor
    selected: Tensor
    lost: Tensor
    won: Tensor
    cells: Tensor
    candidates: Tensor
    cheapest: Tensor
    status: Tensor
    mode: str = ""
    box_format: str = "cxcywh"

    def __len__(self) -> int:
        return int(self.k.shape[0])

    @property
    def starved(self) -> Tensor:
        """bool [N]: an "ok" row with no cell after the contest."""
        return (self.status == OK) & (self.cells == 0)

    @property
    def status_names(self) -> list[str]:
        return [STATUSES[int(s)] for s in self.status]

    def subset(self, keep: Tensor) -> TargetAudit:
        """The rows where ``keep`` (bool [N], or int64 indices) holds, in that order."""
        return TargetAudit(**{f.name: (getattr(self, f.name)[keep] if isinstance(getattr(self, f.name), Tensor)
                                       else getattr(self, f.name)) for f in fields(self)})

    def starvation_order(self) -> Tensor:
        """int64 [N]: the rows, starved first; then the fewest cells per requested k, the most lost, row order."""
        ratio = self.cells.double() / self.k.clamp(min=1).double()
        ratio = torch.where(self.status == OK, ratio, torch.full_like(ratio, float("inf")))
        keys = sorted(range(len(self)), key=lambda i: (not bool(self.starved[i]), float(ratio[i]),
                                                       -int(self.lost[i]), i))
        return torch.tensor(keys, dtype=torch.long)

    def rows(self) -> list[dict]:
        """One dict per row (``COLUMNS`` plus the box and ``starved``), plain Python values."""
        starved = self.starved
        return [{"row": i, "image": int(self.image[i]), "slot": int(self.slot[i]), "class": int(self.label[i]),
                 "box": [float(v) for v in self.box[i]], "status": STATUSES[int(self.status[i])],
                 "k": int(self.k[i]), "selected": int(self.selected[i]), "lost": int(self.lost[i]),
                 "won": int(self.won[i]), "cells": int(self.cells[i]), "candidates": int(self.candidates[i]),
                 "cheapest": float(self.cheapest[i]), "starved": bool(starved[i])} for i in range(len(self))]

    def table(self, order: str = "starvation", limit: int | None = None, masked: bool = False) -> str:
        """The audit as a text table: ``order`` "starvation" (``starvation_order``) or "row"; at most ``limit``
        rows (None: all); masked slots only with ``masked``. A last line counts the targets and the starved."""
        if order not in ("starvation", "row"):
            raise ValueError(f"order must be 'starvation' or 'row', got {order!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        indices = self.starvation_order() if order == "starvation" else torch.arange(len(self))
        if not masked:
            indices = indices[self.status[indices] != MASKED]
        shown = indices if limit is None else indices[:limit]
        rows = self.rows()
        widths = {"row": 5, "image": 5, "class": 5, "status": 13, "k": 3, "selected": 8, "lost": 4, "won": 3,
                  "cells": 5, "candidates": 10, "cheapest": 10}
        head = "  ".join(f"{c:>{widths[c]}}" for c in COLUMNS) + "  box"
        lines = [head]
        for i in shown.tolist():
            r = rows[i]
            cells = [f"{r[c]:>{widths[c]}}" if c != "cheapest" else f"{r[c]:>{widths[c]}.4g}" for c in COLUMNS]
            box = ", ".join(f"{v:.1f}" for v in r["box"])
            lines.append("  ".join(cells) + f"  ({box}){'  STARVED' if r['starved'] else ''}")
        real = int((self.status != MASKED).sum())
        note = f" (showing {len(shown)})" if len(shown) < len(indices) else ""
        lines.append(f"{real} target row(s){note}, {int(self.starved.sum())} starved; "
                     + ", ".join(f"{name}: {int((self.status == code).sum())}" for code, name in enumerate(STATUSES)
                                 if code != MASKED and bool((self.status == code).any())))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def status_of(real: Tensor, well_formed: Tensor, k: Tensor, over_capacity: Tensor | None = None) -> Tensor:
    """int64 status codes of rows (each [N]): masked (not ``real``), over capacity, malformed (real but not
    ``well_formed``), no candidates (k = 0), else ok."""
    status = torch.full_like(k, OK)
    status = torch.where(k == 0, torch.full_like(status, NO_CANDIDATES), status)
    status = torch.where(real & ~well_formed, torch.full_like(status, MALFORMED), status)
    if over_capacity is not None:
        status = torch.where(over_capacity, torch.full_like(status, OVER_CAPACITY), status)
    return torch.where(real, status, torch.full_like(status, MASKED))
