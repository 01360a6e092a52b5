"""Library side of ``scripts/parity.py``: the built-in scenario suite, recorded batches, the subjects' runtimes,
the printed and JSON reports, and the difference plots.

Everything the command line can get wrong (a missing or malformed ``.pt`` file, an ONNX graph built for another
mode or size, TensorRT missing) raises :class:`InputError` with a one-line message before any comparison runs; the
script prints it and exits with code 2. Exit code 0 means every report passed, 1 that at least one failed.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

import torch
from torch import Tensor

from .assignment import Assignment
from .config import LossConfig
from .grid import level_shapes, make_grid
from .parity import SUBJECTS, ParityReport, compare, reference_for, runtime_outcome, static_for
from .scenarios import KINDS, make_scenario
from .validation import check_predictions, check_targets, unwrap_model_output

MODES = ("regular", "fast")
DEFAULT_MODES = MODES
DEFAULT_SEEDS = 2
DEFAULT_BATCH_SIZE = 2
DEFAULT_IMAGE_SIZE = (640, 640)
DEFAULT_NUM_CLASSES = 80
DEFAULT_STRIDES = (8, 16, 32)
DEFAULT_PLOT_LIMIT = 20
#: Per-kind cap on the built-in suite's seeds. The regular reference builds a [G, candidates, C] class-cost tensor
#: per image; on 'crowded' (100-200 targets covering most of a 640x640 image) that is ~80M floats, computed twice
#: per batch (assign and loss), and one seed of it costs about as much as every other kind's two seeds together.
SEED_CAPS = {"crowded": 1}

RECORDED_FORMAT = ("a torch.save'd dict with 'predictions' (per-level list of [B, 1, H, W, 5 + C] tensors) and "
                   "'targets' ([N, 6] tensor: image_index, class, cx, cy, w, h in pixels)")


class InputError(Exception):
    """A usage or input problem, reported as one line and exit code 2."""


@dataclass
class Batch:
    """One batch to compare: a label for the report, per-level predictions [B, 1, H, W, 5 + C], targets [N, 6]."""

    label: str
    predictions: list[Tensor]
    targets: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.predictions[0].shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.predictions[0].shape[-1]) - 5

    def image_size(self, strides: Sequence[int]) -> tuple[int, int]:
        return int(self.predictions[0].shape[2]) * strides[0], int(self.predictions[0].shape[3]) * strides[0]


# ---------------------------------------------------------------------------------------------------------------
# batches


def check_suite_options(kinds: Sequence[str], seeds: int, batch_size: int, image_size: Sequence[int],
                        num_classes: int, strides: Sequence[int]) -> None:
    """Raise :class:`InputError` for options the scenario generator cannot honour."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError(f"unknown scenario kind(s) {unknown}; choose from {list(KINDS)}")
    for name, value in (("--seeds", seeds), ("--batch-size", batch_size), ("--num-classes", num_classes)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    _check_strides(strides)
    height, width = image_size
    if height < 1 or width < 1:
        raise InputError(f"--image-size must be positive, got {height} {width}")
    bad = [s for s in strides if height % s or width % s]
    if bad:
        raise InputError(f"--image-size {height} {width} is not divisible by stride(s) {bad}")


def _check_strides(strides: Sequence[int]) -> None:
    if not strides or any(s < 1 for s in strides):
        raise InputError(f"--strides must be positive integers, got {list(strides)}")


def suite_seeds(kind: str, seeds: int) -> range:
    """Seeds of ``kind`` in the built-in suite: ``seeds``, capped by :data:`SEED_CAPS`."""
    return range(min(seeds, SEED_CAPS.get(kind, seeds)))


def build_suite(kinds: Sequence[str] = KINDS, seeds: int = DEFAULT_SEEDS, batch_size: int = DEFAULT_BATCH_SIZE,
                image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, num_classes: int = DEFAULT_NUM_CLASSES,
                strides: Sequence[int] = DEFAULT_STRIDES, cap: bool = True) -> list[Batch]:
    """The built-in seeded suite: each kind with seeds 0 .. seeds - 1 (capped per kind by :data:`SEED_CAPS` unless
    ``cap`` is False)."""
    check_suite_options(kinds, seeds, batch_size, image_size, num_classes, strides)
    batches = []
    for kind in kinds:
        for seed in (suite_seeds(kind, seeds) if cap else range(seeds)):
            s = make_scenario(kind, batch_size=batch_size, image_size=tuple(image_size), num_classes=num_classes,
                              strides=tuple(strides), seed=seed)
            batches.append(Batch(f"{kind} seed {seed}", s.predictions, s.targets))
    return batches


def load_recorded(path: str | Path, strides: Sequence[int] = DEFAULT_STRIDES,
                  num_classes: int | None = None) -> Batch:
    """Load and validate one recorded batch (see :data:`RECORDED_FORMAT`).

    ``num_classes`` None infers it from the predictions' last dimension (5 + C). Predictions may also be stored as
    the head's (eval output, per-level list) tuple. Tensors are detached and moved to the CPU; predictions become
    float32 (the dtype the static assignment and the exported graphs compute in). Raises :class:`InputError`
    naming the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is an input error
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: torch.load cannot read it ({first}); expected {RECORDED_FORMAT}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: holds a {type(data).__name__}; expected {RECORDED_FORMAT}")
    missing = [key for key in ("predictions", "targets") if key not in data]
    if missing:
        raise InputError(f"{path}: missing key(s) {missing}; expected {RECORDED_FORMAT}")
    try:
        predictions = unwrap_model_output(data["predictions"])
        if not predictions:
            raise ValueError("'predictions' is an empty list; expected one [B, 1, H, W, 5 + C] tensor per stride")
        for level, p in enumerate(predictions):
            if not isinstance(p, Tensor):
                raise TypeError(f"prediction level {level} is a {type(p).__name__}, not a tensor")
        first = predictions[0]
        inferred = int(first.shape[-1]) - 5 if first.dim() == 5 else None
        if num_classes is None:
            if inferred is None or inferred < 1:
                raise ValueError(f"prediction level 0 has shape {tuple(first.shape)}; expected [B, 1, H, W, 5 + C] "
                                 "with C >= 1")
            num_classes = inferred
        check_predictions(predictions, tuple(strides), num_classes)
        targets = data["targets"]
        if not isinstance(targets, Tensor):
            raise TypeError(f"'targets' is a {type(targets).__name__}; expected an [N, 6] tensor")
        check_targets(targets.detach().cpu(), int(first.shape[0]), num_classes)
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: {error}") from None
    predictions = [p.detach().cpu().float() for p in predictions]
    return Batch(path.name, predictions, data["targets"].detach().cpu().float())


def load_recorded_batches(paths: Sequence[str | Path], strides: Sequence[int] = DEFAULT_STRIDES,
                          num_classes: int | None = None) -> tuple[list[Batch], int]:
    """Every recorded file (see :func:`load_recorded`) and the one class count they share."""
    _check_strides(strides)
    if num_classes is not None and num_classes < 1:
        raise InputError(f"--num-classes must be >= 1, got {num_classes}")
    batches = [load_recorded(p, strides, num_classes) for p in paths]
    counts = sorted({b.num_classes for b in batches})
    if len(counts) > 1:
        raise InputError(f"the recorded files have different class counts {counts}; compare them in separate runs")
    return batches, counts[0]


# ---------------------------------------------------------------------------------------------------------------
# subjects


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - a file onnx cannot parse is an input error
        raise InputError(f"{path}: not an ONNX model ({str(error).strip().splitlines()[0]})") from None
    return {p.key: p.value for p in model.metadata_props}


def expected_metadata(config: LossConfig, image_size: Sequence[int]) -> dict[str, str]:
    """The ``metadata_props`` an exported graph for ``config`` at ``image_size`` carries (version excluded)."""
    from .export.onnx_export import metadata

    expected = metadata(config, _preset(config, image_size), with_targets=False)
    return {k: v for k, v in expected.items() if k not in ("yolox_export.version", "with_targets")}


def resolve_onnx(paths: Sequence[str | Path], modes: Sequence[str], configs: dict[str, LossConfig],
                 image_size: Sequence[int] | None) -> dict[str, Path]:
    """{mode: the ONNX file among ``paths`` exported for that mode}; every file's metadata must match the run's
    configuration (strides, classes, image size, options). Raises :class:`InputError` naming the mismatch."""
    _require_onnxruntime()
    if image_size is None:
        raise InputError("subject onnxruntime needs batches of one image size (an exported graph has a fixed grid)")
    by_mode: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        meta = _onnx_metadata(path)
        mode = meta.get("mode")
        if mode not in modes:
            found = f"mode {mode!r}" if mode else "no 'mode' metadata (was it written by scripts/export.py?)"
            raise InputError(f"{path}: has {found}; this run compares mode(s) {list(modes)}")
        if mode in by_mode:
            raise InputError(f"{path}: a second ONNX file for {mode} mode (first: {by_mode[mode]})")
        wrong = [f"{k} is {meta.get(k)!r}, the run needs {v!r}"
                 for k, v in expected_metadata(configs[mode], image_size).items() if meta.get(k) != v]
        if wrong:
            raise InputError(f"{path}: exported for another configuration: {'; '.join(wrong)}")
        by_mode[mode] = path
    missing = [m for m in modes if m not in by_mode]
    if missing:
        raise InputError(f"subject onnxruntime: no --onnx file for mode(s) {missing} (pass one per mode, or --export)")
    return by_mode


def _require_onnxruntime() -> None:
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # its graph-cleanup warnings are noise here
    except ImportError:
        raise InputError("subject onnxruntime: onnxruntime is not installed; install it with "
                         "`pip install yolox-export[cpu]`") from None


def _preset(config: LossConfig, image_size: Sequence[int]):
    from .export.presets import Preset

    return Preset(name=f"parity_{config.mode}", image_size=tuple(int(x) for x in image_size),
                  strides=tuple(config.strides), num_classes=config.num_classes, mode=config.mode,
                  batch=(1, 2, 32), max_gt=(1, 32, 1024), opset=20)


def export_graphs(modes: Sequence[str], configs: dict[str, LossConfig], image_size: Sequence[int] | None,
                  directory: str | Path, log: TextIO | None = None) -> dict[str, Path]:
    """Export one graph per mode into ``directory`` with ``export_onnx`` (exporter chatter silenced)."""
    _require_onnxruntime()
    if image_size is None:
        raise InputError("--export needs batches of one image size (an exported graph has a fixed grid)")
    from .export.onnx_export import export_onnx

    paths = {}
    for mode in modes:
        start = time.perf_counter()
        target = Path(directory) / f"parity_{mode}.onnx"
        paths[mode] = export_onnx(_preset(configs[mode], image_size), target, config=configs[mode])
        if log is not None:
            print(f"exported the {mode}-mode graph to {target} in {time.perf_counter() - start:.1f} s", file=log)
    return paths


def resolve_engines(paths: Sequence[str | Path] | None, modes: Sequence[str]) -> dict[str, Path]:
    """{mode: engine}, engines given in the order of ``modes``; TensorRT must be usable here."""
    if not paths:
        raise InputError("subject tensorrt needs --engine PATH (one per mode, in the order of --modes)")
    if len(paths) != len(modes):
        raise InputError(f"--engine got {len(paths)} file(s) for {len(modes)} mode(s) {list(modes)}; "
                         "give one engine per mode, in the order of --modes")
    from .export.tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        raise InputError(f"subject tensorrt: {reason}")
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such TensorRT engine")
    return {mode: Path(p) for mode, p in zip(modes, paths)}


# ---------------------------------------------------------------------------------------------------------------
# running


@dataclass
class Options:
    """What ``scripts/parity.py`` was asked to do (see its ``--help``)."""

    modes: Sequence[str] = DEFAULT_MODES
    subjects: Sequence[str] = ("static",)
    kinds: Sequence[str] = KINDS
    seeds: int = DEFAULT_SEEDS
    batch_size: int = DEFAULT_BATCH_SIZE
    image_size: Sequence[int] = DEFAULT_IMAGE_SIZE
    num_classes: int | None = None
    strides: Sequence[int] = DEFAULT_STRIDES
    recorded: Sequence[str] | None = None
    onnx: Sequence[str] | None = None
    export: bool = False
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

    @property
    def passed(self) -> bool:
        return all(bool(r) for r in self.reports.values())

    def to_dict(self) -> dict:
        return {"passed": self.passed, "batches": [b.label for b in self.batches],
                "reports": {mode: r.to_dict() for mode, r in self.reports.items()}}


def load_reports(path: str | Path) -> dict[str, ParityReport]:
    """The per-mode reports of a ``--json`` file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {mode: ParityReport.from_dict(r) for mode, r in data["reports"].items()}


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def run(options: Options, out: TextIO | None = None) -> RunResult:
    """Build or load the batches, compare every subject in every mode, print, write JSON and plots.

    Raises :class:`InputError` before any comparison for bad options or inputs."""
    out = out or sys.stdout
    modes = _unique(options.modes)
    subjects = _unique(options.subjects)
    if (options.onnx or options.export) and "onnxruntime" not in subjects:
        subjects.append("onnxruntime")
    if options.engine and "tensorrt" not in subjects:
        subjects.append("tensorrt")
    bad = [m for m in modes if m not in MODES] + [s for s in subjects if s not in SUBJECTS]
    if bad:
        raise InputError(f"unknown mode(s)/subject(s) {bad}")
    if options.onnx and options.export:
        raise InputError("give either --onnx or --export, not both")
    if options.plot_limit < 0:
        raise InputError(f"--plot-limit must be >= 0, got {options.plot_limit}")
    if options.plot_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib (pip install matplotlib)") from None

    if options.recorded:
        batches, num_classes = load_recorded_batches(options.recorded, options.strides, options.num_classes)
        description = f"{len(batches)} recorded batch(es)"
    else:
        num_classes = options.num_classes if options.num_classes is not None else DEFAULT_NUM_CLASSES
        batches = build_suite(options.kinds, options.seeds, options.batch_size, options.image_size, num_classes,
                              options.strides, cap=options.seed_caps)
        h, w = options.image_size
        capped = [k for k in options.kinds if options.seed_caps and len(suite_seeds(k, options.seeds)) < options.seeds]
        note = f"; {', '.join(capped)}: {', '.join(str(SEED_CAPS[k]) for k in capped)}" if capped else ""
        description = (f"{len(batches)} seeded batches ({len(options.kinds)} kind(s) x {options.seeds} seed(s)"
                       f"{note}; B={options.batch_size}, {h}x{w})")
    strides = tuple(options.strides)
    sizes = {b.image_size(strides) for b in batches}
    image_size = next(iter(sizes)) if len(sizes) == 1 else None
    configs = {mode: LossConfig(strides, num_classes, mode=mode) for mode in modes}

    result = RunResult(batches=batches)
    with tempfile.TemporaryDirectory(prefix="yolox_parity_") as tmp:
        onnx_paths: dict[str, Path] = {}
        engine_paths: dict[str, Path] = {}
        if "onnxruntime" in subjects:
            if options.export:
                onnx_paths = export_graphs(modes, configs, image_size, tmp, log=out)
            elif options.onnx:
                onnx_paths = resolve_onnx(options.onnx, modes, configs, image_size)
            else:
                raise InputError("subject onnxruntime needs --onnx PATH (one per mode) or --export")
        if "tensorrt" in subjects:
            engine_paths = resolve_engines(options.engine, modes)
        if options.plot_dir is not None:
            Path(options.plot_dir).mkdir(parents=True, exist_ok=True)

        print(f"{description}, {num_classes} classes, strides {'/'.join(map(str, strides))}; "
              f"subjects: {', '.join(subjects)}", file=out)
        for mode in modes:
            start = time.perf_counter()
            report = compare(batches, configs[mode], subjects, onnx_path=onnx_paths.get(mode),
                             engine_path=engine_paths.get(mode), gradients=options.gradients)
            elapsed = time.perf_counter() - start
            result.reports[mode] = report
            print("", file=out)
            print(report, file=out)
            for line in difference_summary(report, batches):
                print(line, file=out)
            print(f"({mode} mode: {elapsed:.1f} s)", file=out)
            if options.plot_dir is not None and report.differences:
                subjects_for = SubjectAssignments(configs[mode], onnx_paths.get(mode), engine_paths.get(mode))
                result.plots += plot_differences(report, batches, configs[mode], options.plot_dir,
                                                 subjects_for, limit=options.plot_limit)
    if options.json_path is not None:
        path = Path(options.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}", file=out)
    if result.plots:
        print(f"wrote {len(result.plots)} plot(s) to {options.plot_dir}", file=out)
    elif options.plot_dir is not None:
        print(f"no differences to plot; nothing written to {options.plot_dir}", file=out)
    verdicts = ", ".join(f"{mode} {'PASS' if r else 'FAIL'}" for mode, r in result.reports.items())
    print(f"overall: {'PASS' if result.passed else 'FAIL'} ({verdicts})", file=out)
    return result


def group_differences(report: ParityReport) -> dict[tuple[str, int, int], list]:
    """{(subject, batch, image): [Difference, ...]} in the report's order."""
    groups: dict[tuple[str, int, int], list] = defaultdict(list)
    for d in report.differences:
        groups[(d.subject, d.batch, d.image)].append(d)
    return dict(groups)


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


# ---------------------------------------------------------------------------------------------------------------
# plots


class SubjectAssignments:
    """Recomputes the reference's and a subject's full assignment of one batch, for plotting."""

    def __init__(self, config: LossConfig, onnx_path=None, engine_path=None, static_module=None):
        self.config = config
        self.reference = reference_for(config)
        self.static = static_module if static_module is not None else static_for(config)
        self.paths = {"onnxruntime": onnx_path, "tensorrt": engine_path}
        self.runners: dict[str, object] = {}

    def __call__(self, subject: str, batch: Batch) -> tuple[Assignment, Assignment]:
        reference = self.reference.assign(batch.predictions, batch.targets)
        if subject == "static":
            return reference, self.static.assign(batch.predictions, batch.targets)
        if subject not in self.runners:
            if subject == "onnxruntime":
                from .export.ort_runtime import OrtRunner

                self.runners[subject] = OrtRunner(self.paths[subject])
            else:
                from .export.tensorrt import TensorRTRunner

                self.runners[subject] = TensorRTRunner(self.paths[subject])
        return reference, runtime_outcome(self.runners[subject], batch.predictions, batch.targets).assignment


def plot_differences(report: ParityReport, batches: Sequence[Batch], config: LossConfig, directory: str | Path,
                     assignments: Callable[[str, Batch], tuple[Assignment, Assignment]] | None = None,
                     limit: int = DEFAULT_PLOT_LIMIT) -> list[Path]:
    """One PNG per (subject, batch, image) with differences, at most ``limit``; returns the paths written.

    ``assignments(subject, batch)`` gives the (reference, subject) assignments of a batch; by default the
    reference and the static module of ``config``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

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
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def draw_image(batch: Batch, image: int, reference: Assignment, got: Assignment, diffs: Sequence, config: LossConfig,
               title: str = ""):
    """A matplotlib figure of one image: cell centres per level, target boxes, each side's cells per target, and
    the differing cells (tie-explained and real in different colours)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    strides = config.strides
    height, width = batch.image_size(strides)
    shapes = level_shapes(batch.predictions)
    grid = make_grid(shapes, strides)
    xs = ((grid.x_shifts + 0.5) * grid.strides).numpy()
    ys = ((grid.y_shifts + 0.5) * grid.strides).numpy()
    rows = batch.targets[batch.targets[:, 0] == image]  # this image's targets, in matched_gt order
    palette = [plt.get_cmap("tab20")(i) for i in range(20) if i not in (2, 3, 6, 7)]  # no orange/red: highlights
    colour = lambda t: palette[t % len(palette)]  # noqa: E731

    fig, ax = plt.subplots(figsize=(9, 9 * height / width + 0.8))
    grey = ("0.70", "0.55", "0.40")
    for level, stride in enumerate(strides):
        on = (grid.strides == stride).numpy()
        ax.scatter(xs[on], ys[on], s=(1.5, 4.0, 9.0)[min(level, 2)], c=grey[min(level, 2)], marker=".",
                   linewidths=0, zorder=1)
    # targets a differing cell went to (on either side) are drawn strong; in a busy image the others fade
    involved = {d.reference_gt for d in diffs} | {d.subject_gt for d in diffs}
    busy = len(rows) > 30
    strength = lambda t: 1.0 if (t in involved or not busy) else 0.3  # noqa: E731
    for t, (_, cls, cx, cy, w, h) in enumerate(rows.tolist()):
        ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, edgecolor=colour(t), linewidth=1.2,
                               alpha=strength(t), zorder=2))
        if t in involved or not busy:
            ax.text(cx - w / 2, cy - h / 2, f"{t}:{int(cls)}", color=colour(t), fontsize=6, va="bottom", zorder=6,
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
