"""A picture of one image's audit: every target's box and the cells it kept, starved targets in a warning colour.

matplotlib is imported when a picture is drawn, never when this module is. Boxes in pixels, in the audit's box
format; cells drawn at their centres ((col + 0.5) * s, (row + 0.5) * s), a marker size per level.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..box_format import BOX_FORMATS
from ..grid import Grid
from .result import TargetAudit

#: The warning colour of a starved target's box; kept cells take their target's colour from a cycle without it.
STARVED_COLOUR = "#d62728"
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#ff7f0e")


def plot_image(audit: TargetAudit, matched_gt: Tensor, grid: Grid, image: int, image_size: tuple[int, int],
               path: str | Path, title: str = "") -> Path:
    """Write a PNG of ``image``: its "ok" targets' boxes (starved ones in ``STARVED_COLOUR``, dashed), and each
    kept cell (``matched_gt`` [A] of that image, slots) as a dot in its target's colour. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = image_size
    fig, ax = plt.subplots(figsize=(7, 7 * height / max(width, 1)))
    rows = (audit.image == image).nonzero().flatten().tolist()
    colour_of = {}
    for n, i in enumerate(rows):
        slot = int(audit.slot[i])
        starved = bool(audit.starved[i])
        colour = STARVED_COLOUR if starved else PALETTE[n % len(PALETTE)]
        colour_of[slot] = colour
        x1, y1, x2, y2 = (float(v) for v in BOX_FORMATS[audit.box_format].corners(audit.box[i].double()))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=2.0 if starved else 0.8, linestyle="--" if starved else "-"))
    xs = ((grid.x_shifts + 0.5) * grid.strides).tolist()
    ys = ((grid.y_shifts + 0.5) * grid.strides).tolist()
    strides = grid.strides.tolist()
    for cell, slot in enumerate(matched_gt.tolist()):
        if slot >= 0 and slot in colour_of:
            ax.plot(xs[cell], ys[cell], "o", color=colour_of[slot], markersize=1.5 + strides[cell] / 8)
    starved = int((audit.starved & (audit.image == image)).sum())
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.set_title(f"{title}image {image}: {len(rows)} targets, {starved} starved (red, dashed); dots: kept cells")
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
