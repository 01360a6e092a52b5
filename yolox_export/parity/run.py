"""One parity run: build or load the batches, resolve the subjects' artifacts, compare every subject in every
mode, write the JSON report and the difference plots. The command line (``cli/parity.py``) only parses arguments,
prints the lines :func:`run` logs and picks the exit code."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ..box_format import BOX_FORMATS
from ..config import MODE_RULES, MODES, LossConfig
from ..files import folder_problem, output_problem, shown, write_json
from .comparison import SUBJECTS, SubjectRunners, compare
from .plot import SubjectAssignments, plot_differences
from .report import ParityReport, group_differences
from .runtimes import export_graphs, graph_configs, read_graph, resolve_engines, resolve_onnx, shared
from ..scenarios import KINDS
from .suite import (DEFAULT_BATCH_SIZE, DEFAULT_IMAGE_SIZE, DEFAULT_MODES, DEFAULT_NUM_CLASSES, DEFAULT_PLOT_LIMIT,
                    DEFAULT_SEEDS, DEFAULT_STRIDES, SEED_CAPS, Batch, InputError, build_suite, in_format,
                    load_recorded_batches, suite_seeds)


@dataclass
class Options:
    """What one parity run covers: modes, subjects, the batches (suite or recorded files), the exported artifacts
    (``onnx`` files, ``export`` them on the fly, TensorRT ``engine`` files) and the outputs.

    ``modes``, ``image_size``, ``num_classes`` and ``strides`` left None are read from the ``onnx`` graphs'
    metadata when there are graphs (modes: theirs, in their order), else the suite's defaults (modes:
    ``DEFAULT_MODES``; classes: inferred from recorded files); one given that disagrees with a graph is an
    :class:`InputError`. A graph's loss options (L1, IoU type, radius, ...) are always its own."""

    modes: Sequence[str] | None = None
    subjects: Sequence[str] = ("static",)
    kinds: Sequence[str] = KINDS
    seeds: int = DEFAULT_SEEDS
    batch_size: int = DEFAULT_BATCH_SIZE
    image_size: Sequence[int] | None = None
    num_classes: int | None = None
    strides: Sequence[int] | None = None
    recorded: Sequence[str] | None = None
    onnx: Sequence[str] | None = None
    export: bool = False
    export_grad: bool = False  #: export with the ``predictions_grad`` output, compared as onnxruntime's gradients
    engine: Sequence[str] | None = None
    json_path: str | None = None
    plot_dir: str | None = None
    plot_limit: int = DEFAULT_PLOT_LIMIT
    gradients: bool = True
    seed_caps: bool = True  #: apply :data:`SEED_CAPS` to the suite


@dataclass
class RunResult:
    reports: dict[str, ParityReport] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    #: mode -> labels of the batches not compared: more targets in an image than the graph's fixed G.
    skipped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(bool(r) for r in self.reports.values())

    def to_dict(self) -> dict:
        return {"passed": self.passed, "batches": [b.label for b in self.batches],
                "reports": {mode: r.to_dict() for mode, r in self.reports.items()},
                **({"skipped": self.skipped} if self.skipped else {})}


def load_reports(path: str | Path) -> dict[str, ParityReport]:
    """The per-mode reports of a JSON file written by :func:`run`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {mode: ParityReport.from_dict(r) for mode, r in data["reports"].items()}


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _quiet(line: str) -> None:
    return None


def run(options: Options, log: Callable[[str], None] = _quiet,
        progress: Callable[[str, int, int], None] | None = None) -> RunResult:
    """Build or load the batches, compare every subject in every mode, write JSON and plots; each report and
    progress line goes to ``log``; ``progress(mode, batches done, batches)`` is called after each batch.

    Raises :class:`InputError` before any comparison for bad options or inputs (output paths included)."""
    _check_outputs(options)
    graphs = [read_graph(path) for path in options.onnx or ()]
    modes = _unique(options.modes or ([g.config.mode for g in graphs] if graphs else DEFAULT_MODES))
    subjects = _unique(options.subjects)
    if (options.onnx or options.export) and "onnxruntime" not in subjects:
        subjects.append("onnxruntime")
    if options.engine and "tensorrt" not in subjects:
        subjects.append("tensorrt")
    bad = [m for m in modes if m not in MODES] + [s for s in subjects if s not in SUBJECTS]
    if bad:
        raise InputError(f"unknown mode(s)/subject(s) {bad}")
    if options.onnx and options.export:
        raise InputError("give either ONNX files or export, not both")
    if options.plot_limit < 0:
        raise InputError(f"plot_limit must be >= 0, got {options.plot_limit}")
    if options.plot_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("plotting needs matplotlib (pip install matplotlib)") from None

    formats = {MODE_RULES[mode].box_format for mode in modes}
    strides = tuple(options.strides or (shared(graphs, "strides", lambda g: g.config.strides) if graphs
                                        else DEFAULT_STRIDES))
    if options.recorded:
        if len(formats) > 1:
            raise InputError(f"recorded targets are in one box format, but modes {modes} take "
                             f"{' and '.join(formats)} targets; compare them in separate runs")
        box_format = BOX_FORMATS[formats.pop()]
        batches, num_classes = load_recorded_batches(options.recorded, strides, options.num_classes, box_format)
        description = f"{len(batches)} recorded batch(es)"
    else:
        num_classes = options.num_classes or (shared(graphs, "class count", lambda g: g.config.num_classes)
                                              if graphs else DEFAULT_NUM_CLASSES)
        suite_size = tuple(options.image_size or (shared(graphs, "image size", lambda g: g.image_size) if graphs
                                                  else DEFAULT_IMAGE_SIZE))
        batches = build_suite(options.kinds, options.seeds, options.batch_size, suite_size, num_classes,
                              strides, cap=options.seed_caps)
        h, w = suite_size
        capped = [k for k in options.kinds if options.seed_caps and len(suite_seeds(k, options.seeds)) < options.seeds]
        note = f"; {', '.join(capped)}: {', '.join(str(SEED_CAPS[k]) for k in capped)}" if capped else ""
        description = (f"{len(batches)} seeded batches ({len(options.kinds)} kind(s) x {options.seeds} seed(s)"
                       f"{note}; B={options.batch_size}, {h}x{w})")
    sizes = {b.image_size(strides) for b in batches}
    image_size = next(iter(sizes)) if len(sizes) == 1 else None
    configs = {mode: LossConfig(strides, num_classes, mode=mode) for mode in modes}
    configs.update({mode: c for mode, c in graph_configs(graphs, strides, num_classes).items() if mode in configs})
    fixed_g = {g.config.mode: g.max_gt for g in graphs if g.max_gt is not None}

    result = RunResult(batches=batches)
    with tempfile.TemporaryDirectory(prefix="yolox_parity_") as tmp:
        onnx_paths: dict[str, Path] = {}
        engine_paths: dict[str, Path] = {}
        if "onnxruntime" in subjects:
            if options.export:
                onnx_paths = export_graphs(modes, configs, image_size, tmp, log=log, with_grad=options.export_grad)
            elif options.onnx:
                onnx_paths = resolve_onnx(options.onnx, modes, configs, image_size)
            else:
                raise InputError("subject onnxruntime needs an ONNX file per mode, or export")
        if "tensorrt" in subjects:
            engine_paths = resolve_engines(options.engine, modes)
        if options.plot_dir is not None:
            Path(options.plot_dir).mkdir(parents=True, exist_ok=True)

        log(f"{description}, {num_classes} classes, strides {'/'.join(map(str, strides))}; "
        f"subjects: {', '.join(subjects)}")
        mode_batches_of = {mode: fitting(batches if options.recorded else in_format(batches, configs[mode].box_format),
                                         fixed_g.get(mode), onnx_paths.get(mode), result.skipped.setdefault(mode, []))
                           for mode in modes}
        result.skipped = {mode: labels for mode, labels in result.skipped.items() if labels}
        for mode, labels in result.skipped.items():
            log(f"{mode} mode: {len(labels)} of {len(batches)} batch(es) not compared: an image holds more targets "
                f"than the graph's fixed G = {fixed_g[mode]} ({onnx_paths[mode]}): {', '.join(labels)}")
        for mode in modes:
            start = time.perf_counter()
            runners = SubjectRunners(configs[mode], onnx_paths.get(mode), engine_paths.get(mode))
            mode_batches = mode_batches_of[mode]
            report = compare(mode_batches, configs[mode], subjects, gradients=options.gradients, runners=runners,
                             progress=progress)
            elapsed = time.perf_counter() - start
            result.reports[mode] = report
            log("")
            log(str(report))
            for line in difference_summary(report, mode_batches):
                log(line)
            log(f"({mode} mode: {elapsed:.1f} s)")
            if options.plot_dir is not None and report.differences:
                subjects_for = SubjectAssignments(configs[mode], runners=runners)
                result.plots += plot_differences(report, mode_batches, configs[mode], options.plot_dir,
                                                 subjects_for, limit=options.plot_limit)
    if options.json_path is not None:
        path = Path(options.json_path)
        write_json(path, result.to_dict())
        log(f"wrote {path}")
    if result.plots:
        log(f"wrote {len(result.plots)} plot(s) to {options.plot_dir}")
    elif options.plot_dir is not None:
        log(f"no differences to plot; nothing written to {options.plot_dir}")
    verdicts = ", ".join(f"{mode} {'PASS' if r else 'FAIL'}" for mode, r in result.reports.items())
    log(f"overall: {'PASS' if result.passed else 'FAIL'} ({verdicts})")
    return result


def _check_outputs(options: Options) -> None:
    """:class:`InputError` when the JSON path or the plot folder is not ours to write (``files``)."""
    problem = (output_problem(options.json_path, "json") if options.json_path is not None else None)
    if problem:
        raise InputError(f"{shown(options.json_path)}: {problem}")
    if options.plot_dir is not None:
        problem = folder_problem(options.plot_dir, PLOT_OUTPUTS)
        if problem:
            raise InputError(f"{shown(options.plot_dir)}: {problem}")


#: The plots parity writes into its plot folder (``plot.plot_differences``'s names), as ``files.folder_problem``
#: checks them.
PLOT_OUTPUTS = {"*_batch*_image*.png": "png"}


def fitting(batches: Sequence[Batch], max_gt: int | None, graph: Path | None, skipped: list[str]) -> list[Batch]:
    """The ``batches`` whose images hold at most ``max_gt`` targets each (all when None), the labels of the
    others appended to ``skipped``; :class:`InputError` when none fits ``graph``."""
    if max_gt is None:
        return list(batches)
    fits = []
    for batch in batches:
        counts = torch.bincount(batch.targets[:, 0].long(), minlength=1) if len(batch.targets) else torch.zeros(1)
        if int(counts.max()) <= max_gt:
            fits.append(batch)
        else:
            skipped.append(f"{batch.label} (up to {int(counts.max())})")
    if not fits:
        raise InputError(f"{graph}: its G is fixed at {max_gt} targets per image (a chunked export), and every "
                         f"batch has an image with more ({', '.join(skipped)}); compare batches with fewer "
                         "targets (--kinds, --recorded), or export with a larger --max-gt G:G:G")
    return fits


def difference_summary(report: ParityReport, batches: Sequence[Batch], limit: int = 12) -> list[str]:
    """One line per image with differing cells (at most ``limit``, then a count of the rest)."""
    groups = group_differences(report)
    lines = []
    for (subject, b, image), diffs in list(groups.items())[:limit]:
        real = sum(not d.explained for d in diffs)
        label = batches[b].label if b < len(batches) else "?"
        lines.append(f"  {subject}: batch {b} ({label}) image {image}: {len(diffs)} cell(s) differ, "
                     f"{len(diffs) - real} explained by ties, {real} real")
    if len(groups) > limit:
        lines.append(f"  ... and {len(groups) - limit} more image(s) with differences")
    return lines
