"""The exported artifacts parity runs: ONNX files matched to the run's modes by their metadata, graphs exported
on the fly, TensorRT engines. Problems raise ``suite.InputError`` before any comparison runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..config import MODES, LossConfig
from .suite import InputError, MissingArtifactError

#: Metadata keys a graph needs for parity to read its configuration (``onnx_export.metadata`` writes them).
GRAPH_KEYS = ("yolox_export.version", "mode", "strides", "num_classes", "image_size", "use_l1", "obj_loss_fix",
              "iou_type", "center_sampling_radius", "dynamic_ks_bias")


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    if not path.exists():
        raise InputError(f"{path}: no such ONNX file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file; expected an ONNX graph written by yolox-export export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - a file onnx cannot parse is an input error
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: not an ONNX model ({first})") from None
    return {p.key: p.value for p in model.metadata_props}


@dataclass(frozen=True)
class Graph:
    """An exported graph's configuration, read from its metadata: its loss ``config``, ``image_size`` (H, W), and
    ``max_gt``, the fixed G of a chunked export (None: G dynamic)."""

    path: Path
    config: LossConfig
    image_size: tuple[int, int]
    max_gt: int | None


def read_graph(path: str | Path) -> Graph:
    """The :class:`Graph` at ``path``; :class:`InputError` naming the file when it is missing, not ONNX, or
    lacks the metadata ``yolox-export export`` writes."""
    path = Path(path)
    meta = _onnx_metadata(path)
    missing = [key for key in GRAPH_KEYS if key not in meta]
    if missing:
        raise InputError(f"{path}: its metadata lacks {missing}; was it written by yolox-export export?")
    try:
        if meta["mode"] not in MODES:
            raise ValueError(f"mode {meta['mode']!r} is none of {list(MODES)}")
        height, width = (int(v) for v in meta["image_size"].split("x"))
        flags = {}
        for key in ("use_l1", "obj_loss_fix"):
            if meta[key] not in ("True", "False"):
                raise ValueError(f"{key} is {meta[key]!r}, not True or False")
            flags[key] = meta[key] == "True"
        config = LossConfig(tuple(int(s) for s in meta["strides"].split(",")), int(meta["num_classes"]),
                            mode=meta["mode"], iou_type=meta["iou_type"],
                            center_sampling_radius=float(meta["center_sampling_radius"]),
                            dynamic_ks_bias=float(meta["dynamic_ks_bias"]), **flags)
        max_gt = int(meta["max_gt"]) if "targets_per_chunk" in meta else None
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: unreadable metadata ({error})") from None
    return Graph(path, config, (height, width), max_gt)


def graph_configs(graphs: Sequence[Graph], strides: Sequence[int], num_classes: int) -> dict[str, LossConfig]:
    """{mode: the run's configuration for each graph's mode}: the run's ``strides`` and ``num_classes`` with the
    graph's loss options (L1, IoU type, radius, bias, objectness fix), which the flags do not set."""
    return {g.config.mode: LossConfig(tuple(strides), num_classes, mode=g.config.mode, use_l1=g.config.use_l1,
                                      iou_type=g.config.iou_type, obj_loss_fix=g.config.obj_loss_fix,
                                      center_sampling_radius=g.config.center_sampling_radius,
                                      dynamic_ks_bias=g.config.dynamic_ks_bias) for g in graphs}


def shared(graphs: Sequence[Graph], what: str, value_of: Callable[[Graph], object]):
    """The value every graph has for ``what``; :class:`InputError` when they differ."""
    values = {g.path: value_of(g) for g in graphs}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{path}: {value}" for path, value in values.items())
        raise InputError(f"the graphs differ in {what} ({listed}); compare them in separate runs")
    return next(iter(values.values()))


def expected_metadata(config: LossConfig, image_size: Sequence[int]) -> dict[str, str]:
    """The ``metadata_props`` an exported graph for ``config`` at ``image_size`` carries (version excluded)."""
    from ..export.onnx_export import metadata

    expected = metadata(config, _preset(config, image_size), with_targets=False)
    return {k: v for k, v in expected.items() if k not in ("yolox_export.version", "with_targets", "with_grad",
                                                           "outputs")}


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
            found = f"mode {mode!r}" if mode else "no 'mode' metadata (was it written by yolox-export export?)"
            raise InputError(f"{path}: has {found}; this run compares mode(s) {list(modes)}")
        if mode in by_mode:
            raise InputError(f"{path}: a second ONNX file for {mode} mode (first: {by_mode[mode]})")
        wrong = [f"{k} is {meta.get(k)!r}, the run needs {v!r}"
                 for k, v in expected_metadata(configs[mode], image_size).items() if meta.get(k) != v]
        if wrong:
            raise InputError(f"{path}: exported for another configuration: {'; '.join(wrong)} (its metadata "
                             "gives the run's settings when the flags that set them are left out)")
        by_mode[mode] = path
    missing = [m for m in modes if m not in by_mode]
    if missing:
        raise MissingArtifactError("onnxruntime", missing)
    return by_mode


def _require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError("subject onnxruntime: onnxruntime is not installed; install it with "
                         "`pip install yolox-export[cpu]`") from None


def _preset(config: LossConfig, image_size: Sequence[int], with_grad: bool = False):
    from ..export.presets import Preset

    return Preset(name=f"parity_{config.mode}", image_size=tuple(int(x) for x in image_size),
                  strides=tuple(config.strides), num_classes=config.num_classes, mode=config.mode,
                  batch=(1, 2, 32), max_gt=(1, 32, 1024), opset=20, with_grad=with_grad)


def export_graphs(modes: Sequence[str], configs: dict[str, LossConfig], image_size: Sequence[int] | None,
                  directory: str | Path, log: Callable[[str], None] = lambda line: None,
                  with_grad: bool = False) -> dict[str, Path]:
    """Export one graph per mode into ``directory`` with ``export_onnx`` (exporter chatter silenced); with
    ``with_grad``, graphs with the ``predictions_grad`` output, whose gradients parity then compares."""
    _require_onnxruntime()
    if image_size is None:
        raise InputError("exporting needs batches of one image size (an exported graph has a fixed grid)")
    from ..export.onnx_export import export_onnx

    paths = {}
    for mode in modes:
        start = time.perf_counter()
        target = Path(directory) / f"parity_{mode}.onnx"
        paths[mode] = export_onnx(_preset(configs[mode], image_size, with_grad), target, config=configs[mode])
        log(f"exported the {mode}-mode graph in {time.perf_counter() - start:.1f} s (to a temporary folder, "
            "removed after the run)")
    return paths


def resolve_engines(paths: Sequence[str | Path] | None, modes: Sequence[str]) -> dict[str, Path]:
    """{mode: engine}, engines given in the order of ``modes``; TensorRT must be usable here."""
    if not paths:
        raise InputError("subject tensorrt needs one engine per mode, in the order of the modes")
    if len(paths) != len(modes):
        raise InputError(f"got {len(paths)} TensorRT engine(s) for {len(modes)} mode(s) {list(modes)}; "
                         "give one engine per mode, in the order of the modes")
    from ..export.tensorrt import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        raise InputError(f"subject tensorrt: {reason}")
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such TensorRT engine")
    return {mode: Path(p) for mode, p in zip(modes, paths)}
