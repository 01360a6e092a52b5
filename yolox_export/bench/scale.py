"""Crowded scale: peak memory and time against G (targets per image) in every mode, the static module with its memory
budget (``static``) and without (``static-unchunked``), and each mode's reference until one call passes the worker's
timeout (the "scale" preset, issue #22 item 8). A table and a plot of a run's records; only numbers from them."""

from __future__ import annotations

from pathlib import Path

from ..files import save_figure
from .subjects import MEASUREMENTS, SUBJECTS

#: The subjects of each mode's columns; "reference" stands for that mode's reference subject.
SCALE_SUBJECTS = ("reference", "static", "static-unchunked")


def _subject(name: str, mode: str) -> str:
    return mode if name == "reference" else name


def scale_records(records: list[dict]) -> list[dict]:
    """The records of cases with a fixed number of targets per image."""
    return [r for r in records if r["case"].get("targets_per_image")]


def _find(records: list[dict], mode: str, batch: int, count: int, subject: str, measurement: str) -> dict | None:
    for r in records:
        c = r["case"]
        if (r["mode"], c["batch"], c["targets_per_image"], r["subject"], r["measurement"]) == (
                mode, batch, count, subject, measurement):
            return r
    return None


def _cell(record: dict | None) -> str:
    if record is None:
        return "-"
    if record["status"] != "ok":
        return f"stopped: {record['error']}"
    peak = "-" if record["peak_extra_bytes"] is None else f"{record['peak_extra_bytes'] / 2**20:.0f}"
    return f"{record['median_s']:.2f} s / {peak} MiB"


def scale_table(records: list[dict]) -> list[str]:
    """Markdown: per mode, one row per (B, G); per subject and measurement the time and peak extra memory of one
    call, or why the subject stopped. Empty without records."""
    rows = scale_records(records)
    if not rows:
        return []
    lines = ["### Crowded scale: time and peak extra memory against G", ""]
    for mode in sorted({r["mode"] for r in rows}):
        keys = sorted({(r["case"]["batch"], r["case"]["targets_per_image"]) for r in rows if r["mode"] == mode})
        columns = [(s, m) for s in SCALE_SUBJECTS for m in MEASUREMENTS]
        header = ["B", "G"] + [f"{SUBJECTS[_subject(s, mode)].label} ({m})" for s, m in columns]
        lines += [f"{mode} mode:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for batch, count in keys:
            cells = [_cell(_find(rows, mode, batch, count, _subject(s, mode), m)) for s, m in columns]
            lines.append(f"| {batch} | {count} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def plot_scale(records: list[dict], path: Path) -> Path | None:
    """Forward + backward time and peak extra memory against G (log-log), one line per (mode, subject) that ran;
    None without records."""
    rows = [r for r in scale_records(records) if r["status"] == "ok" and r["measurement"] == "fwd+bwd"]
    if not rows:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    time_ax, memory_ax = fig.subplots(1, 2)
    for mode in sorted({r["mode"] for r in rows}):
        for name in SCALE_SUBJECTS:
            subject = _subject(name, mode)
            points = sorted((r["case"]["targets_per_image"], r) for r in rows
                            if r["mode"] == mode and r["subject"] == subject)
            if not points:
                continue
            label = f"{mode}: {SUBJECTS[subject].label}"
            time_ax.plot([n for n, _ in points], [r["median_s"] for _, r in points], marker="o", label=label)
            memory = [(n, r["peak_extra_bytes"] / 2**20) for n, r in points if r["peak_extra_bytes"] is not None]
            if memory:
                memory_ax.plot(*zip(*memory), marker="o", label=label)
    for ax, unit in ((time_ax, "seconds per call"), (memory_ax, "peak extra MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("targets per image (G)")
        ax.set_ylabel(unit)
        ax.set_title(f"forward + backward, {unit}")
    memory_ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path
