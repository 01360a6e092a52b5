"""One audit run over recorded batches (the library side of ``yolox-export audit``): load a recorded file or every
``.pt`` file of a folder (parity's recorded format, ``parity.suite.RECORDED_FORMAT``), audit each batch with the
static module, write the table (one batch) or the totals per class and size bucket (a folder), and pictures of the
worst images. Progress goes to a callback ``(label, done, total)``; lines to ``log``; nothing is drawn on a terminal.

Settings: the mode, strides and class count come from the flags (parity's), or from the recorded file when it holds
``mode`` / ``strides`` entries and no flag is given; the class count is inferred from the predictions otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import MODE_RULES, MODES, LossConfig
from ..files import write_atomically
from ..grid import level_shapes, make_grid
from ..parity.suite import DEFAULT_STRIDES, InputError, load_recorded_batches
from ..box_format import BOX_FORMATS
from ..static import StaticYoloXLoss
from .result import TargetAudit
from .totals import Totals, totals_of, worst_images

DEFAULT_MAX_IMAGES = 4


@dataclass
class AuditOptions:
    recorded: str
    mode: str | None = None  #: None: the file's ``mode`` entry, else "regular"
    strides: Sequence[int] | None = None  #: None: the file's ``strides`` entry, else parity's default
    num_classes: int | None = None
    max_gt: int | None = None
    max_images: int = DEFAULT_MAX_IMAGES
    output: str = "results"
    table_rows: int | None = None  #: rows of the one-batch table that ``log`` prints (None: all); the file has all


@dataclass
class AuditRun:
    audits: list[TargetAudit] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    totals: Totals | None = None
    written: list[Path] = field(default_factory=list)


def recorded_files(path: str | Path) -> list[Path]:
    """The file, or the folder's ``*.pt`` files in name order; InputError when there is none."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.pt") if p.is_file())
        if not files:
            raise InputError(f"{path}: a folder without .pt files")
        return files
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return [path]


def file_settings(path: Path) -> dict:
    """The ``mode`` and ``strides`` entries a recorded file may hold (checked), else {}."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - load_recorded reports the file properly
        return {}
    found = {}
    if isinstance(data, dict) and "mode" in data:
        if data["mode"] not in MODES:
            raise InputError(f"{path}: 'mode' is {data['mode']!r}; expected one of {list(MODES)}")
        found["mode"] = data["mode"]
    if isinstance(data, dict) and "strides" in data:
        strides = data["strides"]
        if not (isinstance(strides, (list, tuple)) and strides and all(isinstance(s, int) and s > 0 for s in strides)):
            raise InputError(f"{path}: 'strides' is {strides!r}; expected a list of positive ints")
        found["strides"] = tuple(strides)
    return found


def run_audit(options: AuditOptions, log: Callable[[str], None] = lambda line: None,
              progress: Callable[[str, int, int], None] | None = None) -> AuditRun:
    """Audit the recorded batch(es) and write the outputs into ``options.output``; InputError for bad input."""
    if options.max_images < 0:
        raise InputError(f"max_images must be >= 0, got {options.max_images}")
    files = recorded_files(options.recorded)
    settings = file_settings(files[0])
    mode = options.mode or settings.get("mode", "regular")
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose from {list(MODES)}")
    strides = tuple(options.strides or settings.get("strides", DEFAULT_STRIDES))
    box_format = BOX_FORMATS[MODE_RULES[mode].box_format]
    batches, num_classes = load_recorded_batches(files, strides, options.num_classes, box_format)
    config = LossConfig(strides, num_classes, mode=mode)
    module = StaticYoloXLoss.from_config(config, max_gt=options.max_gt, validate=True)
    out = Path(options.output)
    out.mkdir(parents=True, exist_ok=True)
    result = AuditRun(labels=[b.label for b in batches])
    log(f"auditing {len(batches)} recorded batch(es), {mode} mode, {num_classes} classes, strides "
        f"{'/'.join(map(str, strides))}")
    for index, batch in enumerate(batches):
        result.audits.append(module.audit(batch.predictions, batch.targets))
        if progress is not None:
            progress("audit", index + 1, len(batches))
    if len(batches) == 1:
        audit = result.audits[0]
        result.written.append(_write(out / "audit.txt", audit.table() + "\n"))
        result.written.append(_write(out / "audit.json", json.dumps(
            {"file": str(files[0]), "mode": mode, "rows": audit.rows()}, indent=1) + "\n"))
        log(audit.table(limit=options.table_rows))
    else:
        result.totals = totals_of(result.audits)
        result.written.append(_write(out / "audit_totals.txt", result.totals.table() + "\n"))
        result.written.append(_write(out / "audit_totals.json", json.dumps(
            {"folder": str(options.recorded), "mode": mode, "files": result.labels, **result.totals.to_dict()},
            indent=1) + "\n"))
        log(result.totals.table())
    result.written += pictures(result, batches, module, options.max_images, out)
    for path in result.written:
        log(f"wrote {path}")
    return result


def pictures(result: AuditRun, batches, module: StaticYoloXLoss, limit: int, out: Path) -> list[Path]:
    """PNGs of the ``limit`` images with the most starved targets (matplotlib needed only when there is one)."""
    worst = worst_images(result.audits, limit)
    if not worst:
        return []
    from .plot import plot_image

    written = []
    for index, image, _ in worst:
        batch = batches[index]
        assignment = module.assign(batch.predictions, batch.targets)
        grid = make_grid(level_shapes(batch.predictions), module.config.strides)
        name = Path(batch.label).stem
        written.append(plot_image(result.audits[index], assignment.matched_gt[image], grid, image,
                                  batch.image_size(module.config.strides), out / f"audit_{name}_image{image}.png",
                                  title=f"{batch.label}, {module.config.mode} mode: "))
    return written


def _write(path: Path, text: str) -> Path:
    write_atomically(path, text)
    return path
