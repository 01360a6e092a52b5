"""The graph-training demo's outputs (``graph_train``): ``train_graph.json``, the summary table, the PNG.

JSON: {"settings", "seconds", "modes": {mode: {"eager": [total loss per step], "graph": [...],
"same_input": {"loss_gap", "grad_gap", "differing_cells", "tie_explained_cells"} (per step), "compared_steps",
"max_gap": {"loss", "grad"} (over the compared steps), "within_rounding", "tolerance": {"loss", "grad"},
"weight_gap", "step_ms" / "loss_ms": {"eager", "graph"} (medians; the loss call: the loss and its gradient with
respect to the predictions, eager autograd or one onnxruntime run), "export_s", "onnx"}}. matplotlib is imported
only by ``plot``, through ``Figure`` + ``FigureCanvasAgg``.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from .. import files
from ..files import save_figure
from .graph_train import GRAD_TOLERANCE, LOSS_TOLERANCE, GraphDemoResult, GraphRun
from .report import EPS32, WINDOW, window_mean


def _max_over(values: list[float], steps: list[int]) -> float:
    return max((values[s] for s in steps), default=0.0)


def mode_dict(run: GraphRun, onnx: str, export_s: float | None) -> dict:
    steps = run.compared_steps
    return {
        "eager": run.eager.total, "graph": run.graph.total,
        "same_input": {"loss_gap": run.loss_gap, "grad_gap": run.grad_gap, "differing_cells": run.cells,
                       "tie_explained_cells": run.explained},
        "compared_steps": len(steps),
        "max_gap": {"loss": _max_over(run.loss_gap, steps), "grad": _max_over(run.grad_gap, steps)},
        "tolerance": {"loss": LOSS_TOLERANCE, "grad": GRAD_TOLERANCE},
        "within_rounding": run.within_rounding,
        "weight_gap": run.weight_gap,
        "step_ms": {"eager": run.eager.median_step_ms, "graph": run.graph.median_step_ms},
        "loss_ms": {"eager": run.eager.median_loss_ms, "graph": run.graph.median_loss_ms},
        "export_s": export_s, "onnx": Path(onnx).name,
    }


def to_dict(result: GraphDemoResult) -> dict:
    return {"settings": asdict(result.settings), "seconds": result.seconds,
            "modes": {mode: mode_dict(run, result.onnx_paths[mode], result.export_seconds.get(mode))
                      for mode, run in result.runs.items()}}


def write_json(result: GraphDemoResult, directory: Path) -> Path:
    path = Path(directory) / "train_graph.json"
    files.write_json(path, to_dict(result), allow_nan=False)
    return path


COLUMNS = (("mode", 8), (f"eager loss, first -> last {WINDOW}", 28), (f"graph loss, first -> last {WINDOW}", 28),
           ("steps compared", 14), ("max loss gap", 12), ("max grad gap", 12), ("tie cells", 9),
           ("within rounding", 15), ("loss+grad ms eager/graph", 24))


def _row(cells) -> str:
    return " ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


def format_table(data: dict) -> str:
    """One line per mode of a ``to_dict`` result."""
    lines = [_row([name for name, _ in COLUMNS])]
    for mode, e in data["modes"].items():
        curves = [f"{window_mean(e[side], 0):.3f} -> {window_mean(e[side], -WINDOW):.3f}" for side in ("eager",
                                                                                                         "graph")]
        lines.append(_row((mode, *curves, f"{e['compared_steps']}/{len(e['eager'])}", f"{e['max_gap']['loss']:.2g}",
                           f"{e['max_gap']['grad']:.2g}", str(sum(e["same_input"]["differing_cells"])),
                           "yes" if e["within_rounding"] else "NO",
                           f"{e['loss_ms']['eager']:.1f}/{e['loss_ms']['graph']:.1f}")))
    return "\n".join(lines)


def plot(data: dict, path: Path, dpi: int = 64) -> Path:
    """Per mode (columns): the eager run's and the graph run's total loss per step side by side (top); on a log
    axis (bottom) the graph's same-input gaps from eager autograd, loss and gradient, per step, with float32 eps
    and the tolerances (a gap of exactly 0 is not drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    modes = list(data["modes"])
    figure = Figure(figsize=(4.6 * len(modes), 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(modes), squeeze=False, sharex="col")
    for column, mode in enumerate(modes):
        entry = data["modes"][mode]
        steps = range(len(entry["eager"]))
        top, bottom = axes[0][column], axes[1][column]
        top.plot(steps, entry["eager"], color="black", lw=1.2, label="eager reference, autograd")
        top.plot(steps, entry["graph"], color="tab:orange", lw=1.2, ls="--",
                 label="graph under onnxruntime, predictions_grad")
        same = entry["same_input"]
        for name, colour in (("loss_gap", "tab:blue"), ("grad_gap", "tab:red")):
            gaps = [g if g > 0 else math.nan for g in same[name]]
            bottom.plot(steps, gaps, color=colour, lw=0, marker=".", ms=4, label=f"{name.replace('_', ' ')}")
        bottom.axhline(EPS32, color="grey", lw=0.8, ls="--", label="float32 eps")
        bottom.axhline(entry["tolerance"]["grad"], color="tab:red", lw=0.8, ls=":", label="gradient tolerance")
        bottom.axhline(entry["tolerance"]["loss"], color="tab:blue", lw=0.8, ls=":", label="loss tolerance")
        top.set_title(f"{mode}: total loss per step")
        top.set_ylabel("loss")
        top.legend(fontsize=6)
        bottom.set_yscale("log")
        bottom.set_xlabel("step")
        bottom.set_ylabel("graph vs eager autograd, same inputs")
        bottom.legend(fontsize=6, loc="upper right")
    save_figure(figure, path, dpi=dpi)
    return Path(path)
