"""Export presets: the shapes and options one exported graph is built for, read from TOML files.

The shipped presets are package data, ``yolox_export/models/*.toml``, named by their stem (``yolox_s``), so they are
found whatever the working directory. ``yolox_export/models/README.md`` describes the file format.

A preset fixes what the static graph bakes in (image size, strides, number of classes, assignment mode, opset) and
the (min, opt, max) ranges of its two dynamic axes, the batch size and the padded number of targets per image
(``max_gt``, the G axis), used for TensorRT optimization profiles and export examples.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from ..config import MODES

__all__ = ["BATCH_LIMIT", "DEFAULT_PRESET", "MAX_GT_LIMIT", "NAME_LIMIT", "OPSET_RANGE", "PRESET_DIR", "Preset",
           "TENSOR_ELEMENT_LIMIT", "load_preset", "parse_range", "preset_from_mapping",
           "resolve_preset", "shipped_presets", "with_overrides"]

PRESET_DIR = Path(__file__).resolve().parent.parent / "models"
"""Folder of the shipped presets (package data)."""

DEFAULT_PRESET = "yolox_s"
"""Shipped preset used when none is named."""

OPSET_RANGE = (17, 24)
"""Inclusive range of ONNX opsets a preset may ask for."""

#: The largest batch and max_gt (G) a graph is exported for: the bounds of the exporter's symbolic dimensions
#: (``onnx_export.exported_model``); a fixed G (``targets_per_chunk``) has the same bound.
BATCH_LIMIT = 4096
MAX_GT_LIMIT = 65536
#: Elements of the predictions input [max batch, A, 5 + C] at most: TensorRT's limit on a tensor's volume (int32).
TENSOR_ELEMENT_LIMIT = 2**31 - 1

#: Bytes of a preset's name at most: it names the output file, to which overrides and suffixes (``_fast_c20``,
#: ``_targets_grad_chunk8.onnx``) are appended, within the file systems' 255.
NAME_LIMIT = 160

Range = tuple[int, int, int]

_KEYS = ("name", "image_size", "strides", "num_classes", "mode", "batch", "max_gt", "opset")
#: Keys a preset file may leave out, with their defaults.
_OPTIONAL_KEYS = {"with_grad": False}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The upper bound of each range key.
RANGE_LIMITS = {"batch": BATCH_LIMIT, "max_gt": MAX_GT_LIMIT}


def _check_range(value: object, key: str) -> Range:
    """Return ``value`` as a ``(min, opt, max)`` tuple with ``1 <= min <= opt <= max <= RANGE_LIMITS[key]``, else
    raise ValueError."""
    if not isinstance(value, (tuple, list)) or len(value) != 3 or not all(_is_int(v) for v in value):
        raise ValueError(f"key {key!r}: expected three integers (min, opt, max), got {value!r}")
    low, opt, high = value
    limit = RANGE_LIMITS[key]
    if not 1 <= low <= opt <= high <= limit:
        raise ValueError(f"key {key!r}: need 1 <= min <= opt <= max <= {limit} (the exporter's bound on that "
                         f"dimension), got {tuple(value)}")
    return (low, opt, high)


def parse_range(text: str) -> Range:
    """Return ``(min, opt, max)`` from text such as ``"1:8:16"``.

    Raises:
        ValueError: not three colon-separated integers with ``1 <= min <= opt <= max``.
    """
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"expected MIN:OPT:MAX, e.g. '1:8:16', got {text!r}")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError as err:
        raise ValueError(f"expected integers in MIN:OPT:MAX, got {text!r}") from err
    low, opt, high = values
    if not 1 <= low <= opt <= high:
        raise ValueError(f"need 1 <= min <= opt <= max in MIN:OPT:MAX, got {text!r}")
    return values


@dataclasses.dataclass(frozen=True)
class Preset:
    """What one exported graph is built for.

    Attributes:
        name: the preset's name; exported files are named after it (see :func:`with_overrides`).
        image_size: input image ``(H, W)`` in pixels.
        strides: feature-map strides, each dividing H and W.
        num_classes: number of object classes.
        mode: an assignment mode of ``config.MODES``.
        batch: ``(min, opt, max)`` batch sizes.
        max_gt: ``(min, opt, max)`` padded number of targets per image (the G axis).
        opset: ONNX opset to export with.
        with_grad: also output ``predictions_grad``, d loss / d predictions computed in the graph (optional key,
            default False).

    Raises:
        ValueError: on construction, naming the field that is invalid.
    """

    name: str
    image_size: tuple[int, int]
    strides: tuple[int, ...]
    num_classes: int
    mode: str
    batch: Range
    max_gt: Range
    opset: int
    with_grad: bool = False

    def __post_init__(self) -> None:
        for field in ("image_size", "strides", "batch", "max_gt"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"key 'name': expected a non-empty string, got {self.name!r}")
        if "/" in self.name or "\\" in self.name or ".." in self.name or self.name != self.name.strip():
            raise ValueError(f"key 'name': {self.name!r} names the output file, inside the output folder: no path "
                             "separator, no '..', no leading or trailing space")
        if any(ord(c) < 32 or ord(c) == 127 for c in self.name):
            raise ValueError(f"key 'name': {self.name!r} names the output file: no control character (newline, "
                             "tab, null byte, ...)")
        if len(self.name.encode("utf-8")) > NAME_LIMIT:
            raise ValueError(f"key 'name': {len(self.name.encode('utf-8'))} bytes; it names the output file, at most "
                             f"{NAME_LIMIT} bytes (file systems refuse names over 255)")
        size = self.image_size
        if not isinstance(size, tuple) or len(size) != 2 or not all(_is_int(d) and d > 0 for d in size):
            raise ValueError(f"key 'image_size': expected two positive integers (H, W), got {size!r}")
        self._check_strides()
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise ValueError(f"key 'num_classes': expected an integer >= 1, got {self.num_classes!r}")
        if self.mode not in MODES:
            raise ValueError(f"key 'mode': expected one of {list(MODES)}, got {self.mode!r}")
        _check_range(self.batch, "batch")
        _check_range(self.max_gt, "max_gt")
        low, high = OPSET_RANGE
        if not _is_int(self.opset) or not low <= self.opset <= high:
            raise ValueError(f"key 'opset': expected an integer in {low}..{high}, got {self.opset!r}")
        if not isinstance(self.with_grad, bool):
            raise ValueError(f"key 'with_grad': expected true or false, got {self.with_grad!r}")
        elements = self.batch[2] * self.num_anchors * (5 + self.num_classes)
        if elements > TENSOR_ELEMENT_LIMIT:
            raise ValueError(f"keys 'image_size', 'num_classes', 'batch': the predictions input [max batch, A, 5 + C] "
                             f"= [{self.batch[2]}, {self.num_anchors}, {5 + self.num_classes}] has {elements} "
                             f"elements, over {TENSOR_ELEMENT_LIMIT} (TensorRT's limit on a tensor's elements)")

    def _check_strides(self) -> None:
        strides = self.strides
        if not isinstance(strides, tuple) or not strides or not all(_is_int(s) and s > 0 for s in strides):
            raise ValueError(f"key 'strides': expected a non-empty list of positive integers, got {strides!r}")
        height, width = self.image_size
        bad = [s for s in strides if height % s or width % s]
        if bad:
            raise ValueError(f"key 'strides': {bad} do not divide the image size {height}x{width}")

    @property
    def num_anchors(self) -> int:
        """Number of anchor points (grid cells over all strides): the A axis of the graph."""
        height, width = self.image_size
        return sum((height // s) * (width // s) for s in self.strides)


def _range_value(value: object, key: str) -> object:
    """Return a range given as ``"min:opt:max"`` text parsed, any other value as is (:class:`Preset` checks it)."""
    if isinstance(value, str):
        try:
            return parse_range(value)
        except ValueError as err:
            raise ValueError(f"key {key!r}: {err}") from err
    return value


def preset_from_mapping(data: Mapping[str, object]) -> Preset:
    """Return the :class:`Preset` described by a parsed TOML table.

    Raises:
        ValueError: a missing, unknown or invalid key, naming it.
    """
    missing = [key for key in _KEYS if key not in data]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    unknown = sorted(set(data) - set(_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; expected {list(_KEYS)} (optional: {list(_OPTIONAL_KEYS)})")
    return Preset(
        name=data["name"],
        image_size=data["image_size"],
        strides=data["strides"],
        num_classes=data["num_classes"],
        mode=data["mode"],
        batch=_range_value(data["batch"], "batch"),
        max_gt=_range_value(data["max_gt"], "max_gt"),
        opset=data["opset"],
        **{key: data.get(key, default) for key, default in _OPTIONAL_KEYS.items()},
    )


def shipped_presets() -> list[str]:
    """Names of the shipped presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def resolve_preset(preset: str | Path) -> Path:
    """The TOML file of ``preset``: a shipped preset's name (``yolox_s``), else a path to a file.

    Raises:
        FileNotFoundError: neither a shipped preset nor an existing file; the message lists the shipped ones.
    """
    text = str(preset)
    if text in shipped_presets():
        return PRESET_DIR / f"{text}.toml"
    path = Path(preset)
    if path.is_file():
        return path
    raise FileNotFoundError(f"preset not found: {text} (neither a file nor a shipped preset; shipped: "
                            f"{', '.join(shipped_presets())})")


_NAMED_FIELDS = {"mode": lambda v: v, "num_classes": lambda v: f"c{v}", "image_size": lambda v: f"{v[0]}x{v[1]}",
                 "opset": lambda v: f"opset{v}", "strides": lambda v: "s" + "-".join(map(str, v))}


def with_overrides(preset: Preset, **overrides: object) -> Preset:
    """``preset`` with ``overrides`` applied (None values ignored) and named after them: each field that changes
    what the graph computes and differs from the preset appends to the name, e.g. ``yolox_s_fast_c20``.

    Raises:
        ValueError: an unknown field, or an invalid value (naming the field).
    """
    unknown = sorted(set(overrides) - set(_KEYS) - set(_OPTIONAL_KEYS) - {"name"})
    if unknown:
        raise ValueError(f"unknown preset field(s) {unknown}; expected {list(_KEYS) + list(_OPTIONAL_KEYS)}")
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
    changed = [k for k in _NAMED_FIELDS if k in given and given[k] != getattr(preset, k)]
    name = "_".join([preset.name] + [_NAMED_FIELDS[k](given[k]) for k in changed])
    return dataclasses.replace(preset, **{"name": name, **given})


def load_preset(preset: str | Path = DEFAULT_PRESET) -> Preset:
    """Return the :class:`Preset` of a shipped preset's name or of the TOML file at ``preset``.

    Raises:
        FileNotFoundError: no such shipped preset or file.
        ValueError: the file is not valid TOML, or a key is missing, unknown or invalid; the message names the file
            and the key.
    """
    path = resolve_preset(preset)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from err
    try:
        return preset_from_mapping(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
