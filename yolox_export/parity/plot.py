"""Plots of parity differences: per image, the cell centres, target boxes, each side's cells and the differing
cells (tie-explained and real in different colours). matplotlib is imported when a plot is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from ..assignment import Assignment
from ..config import LossConfig
from ..files import save_figure
from ..grid import level_shapes, make_grid
from ..reference import reference_for
from . import comparison
from .report import ParityReport, group_differences
from .suite import DEFAULT_PLOT_LIMIT, Batch


class SubjectAssignments:
    """Recomputes the reference's and a subject's full assignment of one batch, for plotting; runner subjects
    through ``runners`` (a ``comparison.SubjectRunners``, e.g. the one the comparison opened) or new ones opened
    from the paths."""

    def __init__(self, config: LossConfig, onnx_path=None, engine_path=None, static_module=None,
                 runners: comparison.SubjectRunners | None = None):
        self.config = config
        self.reference = reference_for(config)
        self.static = static_module if static_module is not None else comparison.static_for(config)
        self.runners = runners if runners is not None else comparison.SubjectRunners(config, onnx_path, engine_path)

    def __call__(self, subject: str, batch: Batch) -> tuple[Assignment, Assignment]:
        reference = self.reference.assign(batch.predictions, batch.targets)
        if subject == "static":
            return reference, self.static.assign(batch.predictions, batch.targets)
        runner = self.runners(subject, batch.predictions)
        return reference, comparison.runtime_outcome(runner, batch.predictions, batch.targets,
                                                      self.config.box_format).assignment


def plot_differences(report: ParityReport, batches: Sequence[Batch], config: LossConfig, directory: str | Path,
                     assignments: Callable[[str, Batch], tuple[Assignment, Assignment]] | None = None,
                     limit: int = DEFAULT_PLOT_LIMIT) -> list[Path]:
    """One PNG per (subject, batch, image) with differences, at most ``limit``; returns the paths written.

    ``assignments(subject, batch)`` gives the (reference, subject) assignments of a batch; by default the
    reference and the static module of ``config``."""
    assignments = assignments or SubjectAssignments(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cache: dict[tuple[str, int], tuple[Assignment, Assignment]] = {}
    for (subject, b, image), diffs in list(group_differences(report).items())[:limit]:
        batch = batches[b]
        if (subject, b) not in cache:
            cache[(subject, b)] = assignments(subject, batch)
        reference, got = cache[(subject, b)]
        fig = draw_image(batch, image, reference, got, diffs, config, title=(
            f"{report.mode} mode, batch {b} ({batch.label}), image {image}: {subject} vs reference"))
        path = directory / f"{report.mode}_{subject}_batch{b:03d}_image{image:02d}.png"
        save_figure(fig, path, dpi=110, bbox_inches="tight")
        written.append(path)
    return written


def draw_image(batch: Batch, image: int, reference: Assignment, got: Assignment, diffs: Sequence, config: LossConfig,
               title: str = ""):
    """A matplotlib figure of one image: cell centres per level, target boxes, each side's cells per target, and
    the differing cells (tie-explained and real in different colours). A plain ``Figure``: no pyplot, no backend."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    strides = config.strides
    height, width = batch.image_size(strides)
    shapes = level_shapes(batch.predictions)
    grid = make_grid(shapes, strides)
    xs = ((grid.x_shifts + 0.5) * grid.strides).numpy()
    ys = ((grid.y_shifts + 0.5) * grid.strides).numpy()
    rows = batch.targets[batch.targets[:, 0] == image]  # this image's targets, in matched_gt order
    palette = [colormaps["tab20"](i) for i in range(20) if i not in (2, 3, 6, 7)]  # no orange/red: highlights
    colour = lambda t: palette[t % len(palette)]  # noqa: E731

    fig = Figure(figsize=(9, 9 * height / width + 0.8))
    ax = fig.subplots()
    grey = ("0.70", "0.55", "0.40")
    for level, stride in enumerate(strides):
        on = (grid.strides == stride).numpy()
        ax.scatter(xs[on], ys[on], s=(1.5, 4.0, 9.0)[min(level, 2)], c=grey[min(level, 2)], marker=".",
                   linewidths=0, zorder=1)
    # targets a differing cell went to (on either side) are drawn strong; in a busy image the others fade
    involved = {d.reference_gt for d in diffs} | {d.subject_gt for d in diffs}
    busy = len(rows) > 30
    strength = lambda t: 1.0 if (t in involved or not busy) else 0.3  # noqa: E731
    corners = torch.stack(config.box_format.corners(rows[:, 2:6]), dim=-1)  # [n, 4] x1, y1, x2, y2
    for t, (cls, (x1, y1, x2, y2)) in enumerate(zip(rows[:, 1].tolist(), corners.tolist())):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour(t), linewidth=1.2,
                               alpha=strength(t), zorder=2))
        if t in involved or not busy:
            ax.text(x1, y1, f"{t}:{int(cls)}", color=colour(t), fontsize=6, va="bottom", zorder=6,
                    clip_on=True)

    ref_gt, sub_gt = reference.matched_gt[image], got.matched_gt[image]
    for gt_index, marker, size in ((ref_gt, "o", 36), (sub_gt, "x", 22)):
        cells = (gt_index >= 0).nonzero().flatten()
        if cells.numel():
            colors = [(*colour(t)[:3], strength(t)) for t in gt_index[cells].tolist()]
            style = {"facecolors": "none", "edgecolors": colors} if marker == "o" else {"c": colors}
            ax.scatter(xs[cells], ys[cells], s=size, marker=marker, linewidths=1.0, zorder=4, **style)

    real = [d for d in diffs if not d.explained]
    explained = [d for d in diffs if d.explained]
    for group, edge in ((explained, "tab:orange"), (real, "red")):
        if group:
            cells = [d.cell for d in group]
            ax.scatter(xs[cells], ys[cells], s=140, marker="s", facecolors="none", edgecolors=edge, linewidths=2.0,
                       zorder=5)
    for d in diffs:  # link each differing cell to the target(s) each side gave it
        for gt_index, style in ((d.reference_gt, "--"), (d.subject_gt, "-")):
            if 0 <= gt_index < len(rows):
                ax.plot([xs[d.cell], rows[gt_index, 2].item()], [ys[d.cell], rows[gt_index, 3].item()], style,
                        color=colour(gt_index), linewidth=0.8, zorder=3)

    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.set_title(f"{title}\n{len(diffs)} differing cell(s): {len(explained)} explained by ties, {len(real)} real",
                 fontsize=9)
    legend = [
        Line2D([], [], marker=".", color="0.6", linestyle="", label="cell centres (larger = coarser stride)"),
        Line2D([], [], marker="s", color="0.3", fillstyle="none", linestyle="", label="target box (index:class)"),
        Line2D([], [], marker="o", color="0.3", fillstyle="none", linestyle="--", label="reference's cell -> target"),
        Line2D([], [], marker="x", color="0.3", linestyle="-", label="subject's cell -> target"),
        Line2D([], [], marker="s", color="tab:orange", fillstyle="none", linestyle="", markersize=10,
               label="difference explained by a tie"),
        Line2D([], [], marker="s", color="red", fillstyle="none", linestyle="", markersize=10,
               label="real mismatch"),
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
