"""The demo's outputs: ``train_demo.json`` (schema below, checked by ``check_schema``), the summary table, the PNG.

Schema (required keys; more are added, see ``to_dict``)::

    {"modes": {mode: {"reference": [total loss per step], "static": [...],
                      "first_assignment_difference": step or null,
                      "step_ms": {"reference": median ms, "static": median ms}}}}

Relative gap of a value b against the reference's a: |b - a| / |a|, 0 when b == a. matplotlib is imported only by
``plot``, and through ``Figure`` + ``FigureCanvasAgg``, so no global backend is switched.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ..config import COMPONENT_NAMES
from .. import files
from ..files import save_figure
from .train import SIDES, Curve, DemoResult, ModeRun

#: float32 machine epsilon, drawn as a guide on the relative-gap axis.
EPS32 = 2.0**-23
#: Components drawn in the plot: the loss terms and the total (num_fg / num_gts is a count ratio, not a loss).
PLOTTED = ("iou", "obj", "cls", "l1", "Loss")
#: Steps averaged for the "loss from -> to" column.
WINDOW = 10


def relative_gaps(reference: Sequence[float], other: Sequence[float]) -> list[float]:
    """Per-step relative gap |b - a| / |a| of ``other`` (b) against ``reference`` (a); 0 where equal."""
    return [0.0 if b == a else (abs(b - a) / abs(a) if a != 0 else math.inf) for a, b in zip(reference, other)]


def max_gap(reference: Sequence[float], other: Sequence[float], steps: int | None = None) -> float:
    """Largest relative gap over the first ``steps`` steps (all when None); 0 for no steps."""
    return max(relative_gaps(reference[:steps], other[:steps]), default=0.0)


def _curves(curve: Curve) -> dict[str, list[float]]:
    return {name: curve.component(name) for name in COMPONENT_NAMES}


def mode_dict(run: ModeRun) -> dict:
    """One mode's JSON object: the required keys, then per-component curves, timings and the difference analysis."""
    first = run.first_difference
    sides = {"reference": run.reference, "static": run.static}
    same_total = [c[COMPONENT_NAMES.index("Loss")] for c in run.same_input.components]
    return {
        "reference": run.reference.total,
        "static": run.static.total,
        "first_assignment_difference": None if first is None else first.step,
        "step_ms": {name: curve.median_step_ms for name, curve in sides.items()},
        "loss_ms": {name: curve.median_loss_ms for name, curve in sides.items()},
        "control": run.control.total,
        "max_relative_gap": {
            "same_input": max_gap(run.reference.total, same_total),
            "static": max_gap(run.reference.total, run.static.total),
            "control": max_gap(run.reference.total, run.control.total),
            "static_before_first_difference": None if first is None else
            max_gap(run.reference.total, run.static.total, first.step),
        },
        "first_difference": None if first is None else asdict(first) | {"cause": first.cause,
                                                                          "tie_explained": first.tie_explained},
        "weight_gap": {"static": run.weight_gap, "control": run.control_weight_gap},
        "assignment_differs": list(run.differs),
        "control_first_assignment_difference": run.control_first_difference,
        "same_input": {"total": same_total, "differing_cells": run.same_input.cells,
                       "tie_explained_cells": run.same_input.explained,
                       "components": {name: [c[i] for c in run.same_input.components]
                                      for i, name in enumerate(COMPONENT_NAMES)}},
        "components": {name: _curves(curve) for name, curve in (*sides.items(), ("control", run.control))},
        "step_ms_per_step": {name: curve.step_ms for name, curve in sides.items()},
        "loss_ms_per_step": {name: curve.loss_ms for name, curve in sides.items()},
    }


def to_dict(result: DemoResult) -> dict:
    return {"settings": asdict(result.settings), "seconds": result.seconds, "component_names": list(COMPONENT_NAMES),
            "targets_per_batch": result.targets_per_batch,
            "modes": {mode: mode_dict(run) for mode, run in result.runs.items()}}


def write_json(result: DemoResult, directory: Path) -> Path:
    path = Path(directory) / "train_demo.json"
    files.write_json(path, to_dict(result), allow_nan=False)
    return path


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_schema(data: object) -> None:
    """Raise ValueError naming the first place where ``data`` does not follow the required schema."""
    if not isinstance(data, dict) or not isinstance(data.get("modes"), dict) or not data["modes"]:
        raise ValueError("top level must be an object with a non-empty object 'modes'")
    for mode, entry in data["modes"].items():
        where = f"modes.{mode}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        lengths = set()
        for side in SIDES:
            curve = entry.get(side)
            if not isinstance(curve, list) or not curve or not all(_is_number(v) for v in curve):
                raise ValueError(f"{where}.{side} must be a non-empty list of finite numbers")
            lengths.add(len(curve))
        if len(lengths) != 1:
            raise ValueError(f"{where}: reference and static curves have different lengths {sorted(lengths)}")
        first = entry.get("first_assignment_difference", "missing")
        if first is not None and (isinstance(first, bool) or not isinstance(first, int)
                                  or not 0 <= first < lengths.pop()):
            raise ValueError(f"{where}.first_assignment_difference must be null or a step index, got {first!r}")
        times = entry.get("step_ms")
        if not isinstance(times, dict) or any(not _is_number(times.get(s)) or times[s] < 0 for s in SIDES):
            raise ValueError(f"{where}.step_ms must be an object with numbers >= 0 for {list(SIDES)}, got {times!r}")


def _first_text(entry: dict) -> str:
    first = entry["first_difference"]
    if first is None:
        return "none"
    why = {"tie": "tie", "drift": "drift, no tie", "real": "REAL, no tie"}[first["cause"]]
    return f"{first['step']} ({why})"


def window_mean(values: Sequence[float], start: int) -> float:
    part = values[start:start + WINDOW] if start >= 0 else values[start:]
    return sum(part) / len(part)


def _same_input_text(entry: dict) -> str:
    cells, explained = sum(entry["same_input"]["differing_cells"]), sum(entry["same_input"]["tie_explained_cells"])
    return "0" if cells == 0 else f"{cells} ({explained} tie)"


def _weight_text(gap: float) -> str:
    return "identical" if gap == 0 else f"{gap:.2g} off"


def _step_text(step: int | None) -> str:
    return "none" if step is None else str(step)


#: Table columns: header and width.
COLUMNS = (("mode", 8), (f"loss, first -> last {WINDOW} steps", 29), ("same-input gap", 14), ("same-input cells", 16),
           ("run gap", 8), ("control gap", 11), ("first assignment diff", 21), ("control's", 9),
           ("final weights: static/control", 29), ("step ms ref/static", 18), ("loss ms ref/static", 18))


def _row(cells: Sequence[str]) -> str:
    return " ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


def format_table(data: dict) -> str:
    """The per-mode summary of a ``to_dict`` result, one line per mode."""
    lines = [_row([name for name, _ in COLUMNS])]
    for mode, e in data["modes"].items():
        gaps = e["max_relative_gap"]
        lines.append(_row((
            mode, f"{window_mean(e['reference'], 0):.3f} -> {window_mean(e['reference'], -WINDOW):.3f}",
            f"{gaps['same_input']:.2g}", _same_input_text(e), f"{gaps['static']:.2g}", f"{gaps['control']:.2g}",
            _first_text(e), _step_text(e["control_first_assignment_difference"]),
            f"{_weight_text(e['weight_gap']['static'])}/{_weight_text(e['weight_gap']['control'])}",
            f"{e['step_ms']['reference']:.1f}/{e['step_ms']['static']:.1f}",
            f"{e['loss_ms']['reference']:.1f}/{e['loss_ms']['static']:.1f}")))
    return "\n".join(lines)


def plot(data: dict, path: Path, dpi: int = 64) -> Path:
    """Per mode (columns): loss components per step, reference run solid and static run dashed (top); on a log axis
    (bottom) their relative gaps, the control run's total-loss gap and the static module's total-loss gap on the
    reference run's own predictions (exact equality is not drawn: a line of text counts the steps where the two runs'
    totals are equal)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    modes = list(data["modes"])
    figure = Figure(figsize=(4.6 * len(modes), 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(modes), squeeze=False, sharex="col")
    colours = dict(zip(PLOTTED, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "black")))
    for column, mode in enumerate(modes):
        entry = data["modes"][mode]
        comps = entry["components"]
        steps = range(len(entry["reference"]))
        top, bottom = axes[0][column], axes[1][column]
        for name in PLOTTED:
            ref, sub = comps["reference"][name], comps["static"][name]
            if not any(ref) and not any(sub):
                continue
            top.plot(steps, ref, color=colours[name], lw=1.2, label=f"{name} reference")
            top.plot(steps, sub, color=colours[name], lw=1.2, ls="--", label=f"{name} static")
            gaps = [g if g > 0 else math.nan for g in relative_gaps(ref, sub)]
            bottom.plot(steps, gaps, color=colours[name], lw=1.0, label=name)
        control = [g if g > 0 else math.nan for g in relative_gaps(entry["reference"], entry["control"])]
        bottom.plot(steps, control, color="grey", lw=1.0, ls=":", label="Loss, control run (1-ulp start)")
        same = [g if g > 0 else math.nan for g in relative_gaps(entry["reference"], entry["same_input"]["total"])]
        bottom.plot(steps, same, color="tab:red", lw=0, marker=".", ms=3, label="Loss, static on reference's input")
        bottom.axhline(EPS32, color="red", lw=0.8, ls="--", label="float32 eps")
        exact = sum(a == b for a, b in zip(comps["reference"]["Loss"], comps["static"]["Loss"]))
        bottom.text(0.02, 0.97, f"static run's total loss = reference run's, bit for bit, at {exact} of "
                    f"{len(steps)} steps", transform=bottom.transAxes, fontsize=7, va="top")
        first = entry["first_assignment_difference"]
        if first is not None:
            for ax in (top, bottom):
                ax.axvline(first, color="grey", lw=0.8)
        top.set_title(f"{mode}: loss components per step")
        bottom.set_yscale("log")
        bottom.set_xlabel("step")
        bottom.set_ylabel("|static - reference| / |reference|")
        top.set_ylabel("loss")
        top.legend(fontsize=6, ncol=2)
        bottom.legend(fontsize=6, loc="center right")
    save_figure(figure, path, dpi=dpi)
    return Path(path)
