"""The benchmark's figure: median time per subject (log scale), one panel per measurement. A plain matplotlib
``Figure`` (no pyplot, no backend switch), imported when drawn."""

from __future__ import annotations

from pathlib import Path

from ..files import save_figure
from .targets import case_key
from .subjects import MEASUREMENT_LABELS, MEASUREMENTS, SUBJECTS


def plot_results(results: dict, path: Path) -> Path:
    """Median time per subject (log scale), one panel per measurement, one bar group per case."""
    from matplotlib.figure import Figure

    ok = [r for r in results["records"] if r["status"] == "ok"]
    cases = sorted({case_key(r["case"]) for r in ok}, key=lambda k: (k[2], k[1], k[5], k[0]))
    series = sorted({(r["subject"], r["mode"]) for r in ok}, key=lambda s: (list(SUBJECTS).index(s[0]), s[1]))
    fig = Figure(figsize=(max(8, 1.6 * len(cases) * max(1, len(series)) / 4), 9))
    axes = fig.subplots(len(MEASUREMENTS), 1, squeeze=False)
    width = 0.8 / max(1, len(series))
    for ax, measurement in zip(axes[:, 0], MEASUREMENTS):
        for i, (subject, mode) in enumerate(series):
            medians = {case_key(r["case"]): r["median_s"] * 1e3 for r in ok
                       if r["subject"] == subject and r["mode"] == mode and r["measurement"] == measurement}
            xs = [j - 0.4 + (i + 0.5) * width for j, key in enumerate(cases) if key in medians]
            if xs:
                ax.bar(xs, [medians[key] for key in cases if key in medians], width,
                       label=f"{SUBJECTS[subject].label} ({mode})")
        ax.set_yscale("log")
        ax.set_ylabel("median ms (log)")
        ax.set_title(MEASUREMENT_LABELS[measurement])
        ax.set_xlim(-0.5, len(cases) - 0.5)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"{k[0]}\nB={k[1]} {k[2][0]}px" + (f" G={k[5]}" if k[5] else "") for k in cases])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7)
    fig.suptitle(f"yolox-export benchmark, {results['settings']['threads']} threads, {results['machine']['cpu_model']}")
    fig.tight_layout(rect=(0, 0.01 + 0.022 * ((len(labels) + 1) // 2), 1, 1))
    save_figure(fig, path, dpi=110)
    return path
