"""How the cost grows with G (targets per image) and with the image size: a table and a plot of a run's records
that have a fixed ``targets_per_image`` (the "growth" preset, issue #11 item 5). Only numbers from the records."""

from __future__ import annotations

from pathlib import Path

from ..files import save_figure
from .subjects import SUBJECTS

#: Record fields of one growth row: (subject, mode, measurement) per column.
GROWTH_COLUMNS = (("megvii", "megvii", "fwd"), ("static", "megvii", "fwd"), ("static", "megvii", "fwd+bwd"),
                  ("ort-cpu", "megvii", "fwd"))


def growth_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["case"].get("targets_per_image") and r["status"] == "ok"]


def _cell(records: list[dict], size: int, count: int, column: tuple[str, str, str]) -> dict | None:
    subject, mode, measurement = column
    for r in records:
        c = r["case"]
        if (c["image_size"][0], c["targets_per_image"], r["subject"], r["mode"], r["measurement"]) == (
                size, count, subject, mode, measurement):
            return r
    return None


def growth_table(records: list[dict]) -> list[str]:
    """Markdown: one row per (image size, G), median ms and peak extra MiB per column; empty without records."""
    rows = growth_records(records)
    if not rows:
        return []
    keys = sorted({(r["case"]["image_size"][0], r["case"]["targets_per_image"]) for r in rows})
    header = ["image", "G"] + [f"{SUBJECTS[s].label} ({m}, {meas}) ms / MiB" for s, m, meas in GROWTH_COLUMNS]
    lines = ["### Growth with G and image size", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, count in keys:
        cells = []
        for column in GROWTH_COLUMNS:
            r = _cell(rows, size, count, column)
            peak = "-" if r is None or r["peak_extra_bytes"] is None else f"{r['peak_extra_bytes'] / 2**20:.0f}"
            cells.append("-" if r is None else f"{r['median_s'] * 1e3:.1f} / {peak}")
        lines.append(f"| {size} | {count} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_growth(records: list[dict], path: Path) -> Path | None:
    """Median ms against G, one panel per image size, one line per column (log-log); None without records."""
    rows = growth_records(records)
    if not rows:
        return None
    from matplotlib.figure import Figure

    sizes = sorted({r["case"]["image_size"][0] for r in rows})
    fig = Figure(figsize=(5 * len(sizes), 4.5))
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    for ax, size in zip(axes, sizes):
        counts = sorted({r["case"]["targets_per_image"] for r in rows if r["case"]["image_size"][0] == size})
        for column in GROWTH_COLUMNS:
            points = [(n, _cell(rows, size, n, column)) for n in counts]
            points = [(n, r["median_s"] * 1e3) for n, r in points if r is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=f"{SUBJECTS[column[0]].label} ({column[2]})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("targets per image (G)")
        ax.set_ylabel("median ms")
        ax.set_title(f"megvii mode, {size}x{size}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path
