"""The parity report: one row per (subject, output) with element counts, exact matches, tie-explained and real
differences, largest differences and the tolerance; the differing cells; JSON round trip.

For the assignment rows (``fg_mask``, ``matched_gt``) ``exact + explained + real == count``: each row counts the
cells where its own output differs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    """One output of one subject: element counts, exact matches, largest differences, tolerance, verdict."""

    subject: str
    output: str
    count: int = 0
    exact: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    tolerance: float = 0.0
    explained: int = 0
    real: int = 0

    @property
    def needed(self) -> float:
        """Tolerance this output would have needed (the measured difference in the tolerance's own unit)."""
        return self.max_abs if self.output == "matched_iou" else self.max_rel

    @property
    def passed(self) -> bool:
        return self.real == 0 and self.needed <= self.tolerance


@dataclass
class Difference:
    """One cell whose assignment differs: where, what each side said, and the verdict."""

    subject: str
    batch: int
    image: int
    cell: int
    reference_gt: int
    subject_gt: int
    explained: bool


@dataclass
class ParityReport:
    mode: str
    batches: int = 0
    rows: list[Row] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    tie_batches: dict[str, int] = field(default_factory=dict)

    def row(self, subject: str, output: str, tolerance: float = 0.0) -> Row:
        for r in self.rows:
            if r.subject == subject and r.output == output:
                return r
        self.rows.append(Row(subject, output, tolerance=tolerance))
        return self.rows[-1]

    def __bool__(self) -> bool:
        return all(r.passed for r in self.rows)

    def __str__(self) -> str:
        head = f"parity ({self.mode} mode, {self.batches} batches)"
        lines = [head, f"{'subject':<12} {'output':<14} {'exact':>16} {'explained':>9} {'real':>5} "
                       f"{'max abs':>10} {'max rel':>10} {'tol':>8} {'needed':>10}  verdict"]
        for r in self.rows:
            lines.append(
                f"{r.subject:<12} {r.output:<14} {f'{r.exact}/{r.count}':>16} {r.explained:>9} {r.real:>5} "
                f"{r.max_abs:>10.3g} {r.max_rel:>10.3g} {r.tolerance:>8.0e} {r.needed:>10.3g}  {'ok' if r.passed else 'FAIL'}"
            )
        for subject, n in self.tie_batches.items():
            lines.append(f"{subject}: {n} batch(es) with tie-explained differences; their losses were not compared")
        lines.append("PASS" if self else "FAIL")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "batches": self.batches, "passed": bool(self),
                "rows": [asdict(r) | {"needed": r.needed, "passed": r.passed} for r in self.rows],
                "differences": [asdict(d) for d in self.differences], "tie_batches": dict(self.tie_batches)}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "ParityReport":
        rows = [Row(**{k: v for k, v in r.items() if k not in ("needed", "passed")}) for r in data["rows"]]
        return cls(data["mode"], data["batches"], rows, [Difference(**d) for d in data["differences"]],
                   dict(data["tie_batches"]))

    @classmethod
    def from_json(cls, text: str) -> "ParityReport":
        return cls.from_dict(json.loads(text))


def group_differences(report: ParityReport) -> dict[tuple[str, int, int], list]:
    """{(subject, batch, image): [Difference, ...]} in the report's order."""
    groups: dict[tuple[str, int, int], list] = defaultdict(list)
    for d in report.differences:
        groups[(d.subject, d.batch, d.image)].append(d)
    return dict(groups)
