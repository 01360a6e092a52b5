"""The project's speed and memory targets (data: ``targets.toml``), the ratios they are stated in, and their
PASS / MISS / N/A evaluation over a run's records."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from ..reference import REFERENCES
from .subjects import REFERENCE_SUBJECTS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

#: Modes whose reference every record is compared with: ratio_vs_<mode> = reference median / record median.
RATIO_MODES = tuple(REFERENCES)


def case_key(case: dict) -> tuple:
    return (case["kind"], case["batch"], tuple(case["image_size"]), case["num_classes"], case["seed"],
            case.get("targets_per_image", 0))


def add_ratios(records: list[dict]) -> None:
    """Set ratio_vs_<mode> for every mode with a reference = that reference's median / record median (same case,
    device, measurement)."""
    references = {(case_key(r["case"]), r["device"], r["measurement"], r["subject"]): r["median_s"]
                  for r in records if r["family"] == "reference" and r["status"] == "ok"}
    for r in records:
        for mode in RATIO_MODES:
            name = REFERENCE_SUBJECTS[(r["device"], mode)]
            reference = references.get((case_key(r["case"]), r["device"], r["measurement"], name))
            ok = reference is not None and r["status"] == "ok" and r["median_s"]
            r[f"ratio_vs_{mode}"] = reference / r["median_s"] if ok else None


def bga4_bytes(record: dict) -> int:
    """B·G·A·4 bytes of a record's case (G = padded targets per image, at least 1)."""
    return record["case"]["batch"] * max(record.get("max_gt") or 1, 1) * record["cells"] * 4


def memory_multiple(record: dict) -> float | None:
    if record.get("peak_extra_bytes") is None or not record.get("cells"):
        return None
    return record["peak_extra_bytes"] / bga4_bytes(record)


def predictions_multiple(record: dict) -> float | None:
    """Peak extra bytes / the predictions input's bytes (B·A·(5 + C)·4)."""
    if record.get("peak_extra_bytes") is None or not record.get("cells"):
        return None
    c = record["case"]
    return record["peak_extra_bytes"] / (c["batch"] * record["cells"] * (5 + c["num_classes"]) * 4)


#: Metrics computed from a record (the others are read from it, e.g. ratio_vs_<mode>).
DERIVED_METRICS = {"memory_multiple": memory_multiple, "predictions_multiple": predictions_multiple}


@dataclass(frozen=True)
class Target:
    """A project target on one kind: ``metric`` of (subject, mode, measurement) compared with ``threshold``.
    ``mode`` None takes the worst over the modes measured, or over ``modes`` when given (a metric such as the
    B·G·A multiple that means nothing for a mode without [B, G, A] tensors names the modes it is for)."""

    name: str
    kind: str
    subject: str
    measurement: str
    metric: str  # ratio_vs_<mode> | memory_multiple | predictions_multiple
    threshold: float
    mode: str | None = None
    at_least: bool = True
    modes: tuple[str, ...] | None = None


TARGETS_FILE = Path(__file__).resolve().parent / "targets.toml"


def load_targets(path: str | Path = TARGETS_FILE) -> tuple[Target, ...]:
    """The speed and memory targets stored in ``path`` (``[[target]]`` tables with Target's fields; ``mode`` omitted
    means the worst over the modes). Raises ValueError naming a bad entry."""
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Target)}
    targets = []
    for index, entry in enumerate(data.get("target", [])):
        unknown = sorted(set(entry) - fields)
        if unknown:
            raise ValueError(f"{path}: target {index}: unknown key(s) {unknown}; expected {sorted(fields)}")
        try:
            if "modes" in entry:
                entry = dict(entry, modes=tuple(entry["modes"]))
            targets.append(Target(**entry))
        except TypeError as error:
            raise ValueError(f"{path}: target {index}: {error}") from None
    return tuple(targets)


TARGETS = load_targets()


def _metric(record: dict, metric: str) -> float | None:
    return DERIVED_METRICS[metric](record) if metric in DERIVED_METRICS else record.get(metric)


def evaluate_target(target: Target, records: list[dict]) -> dict:
    """PASS / MISS / N/A of ``target`` over ``records`` (those of one case group)."""
    matching = [r for r in records if r["subject"] == target.subject and r["measurement"] == target.measurement
                and (target.mode is None or r["mode"] == target.mode)
                and (target.modes is None or r["mode"] in target.modes) and r["case"]["kind"] == target.kind]
    values = [(_metric(r, target.metric), r["mode"]) for r in matching]
    values = [(v, m) for v, m in values if v is not None]
    result = {"name": target.name, "kind": target.kind, "subject": target.subject, "measurement": target.measurement,
              "metric": target.metric, "threshold": target.threshold, "at_least": target.at_least}
    if not values:
        why = "not measured" if not matching else "; ".join(r["error"] or "no value" for r in matching)
        return dict(result, value=None, mode=target.mode, status="N/A", note=why)
    value, mode = (min if target.at_least else max)(values)
    passed = value >= target.threshold if target.at_least else value <= target.threshold
    return dict(result, value=value, mode=mode, status="PASS" if passed else "MISS", note=None)


def evaluate_targets(records: list[dict]) -> list[dict]:
    """Every target on every (B, image size, C, seed) group that has the target's kind."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        c = r["case"]
        key = (c["batch"], tuple(c["image_size"]), c["num_classes"], c["seed"], c.get("targets_per_image", 0))
        groups.setdefault(key, []).append(r)
    results = []
    for (batch, size, classes, _, _), group in groups.items():
        kinds = {r["case"]["kind"] for r in group}
        for target in TARGETS:
            if target.kind in kinds:
                results.append(dict(evaluate_target(target, group), batch=batch, image_size=list(size),
                                    num_classes=classes))
    return results
