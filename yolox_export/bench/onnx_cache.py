"""The exported graphs the onnxruntime subjects time, cached by (mode, image size, C, strides, with the gradient
or not) and the digest of the code that shapes the graph: a changed module re-exports."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

if TYPE_CHECKING:
    from .settings import Case

OPSET = 20


def onnx_key(case: Case, mode: str, with_grad: bool = False, with_audit: bool = True) -> tuple:
    return (mode, tuple(case.image_size), case.num_classes, tuple(case.strides), with_grad, with_audit)


def source_digest() -> str:
    """SHA-1 of the code that shapes the exported graph, and the torch version: a changed module re-exports."""
    digest = hashlib.sha1(torch.__version__.encode())
    package = Path(__file__).resolve().parents[1]
    files = sorted((package / "static").glob("*.py")) + [package / name for name in (
        "boxes.py", "grid.py", "config.py", "targets.py", "matched_loss.py", "export/onnx_export.py", "export/contract.py",
        "export/grad_graph.py")]
    for path in files:
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_onnx(key: tuple, cache_dir: Path) -> Path:
    """The cached export for (mode, image size, C, strides, with_grad, with_audit), exported with ``export_onnx``
    when missing."""
    from ..export.onnx_export import export_onnx
    from ..export.presets import Preset

    mode, image_size, num_classes, strides, with_grad, with_audit = key
    name = (f"{mode}_{image_size[0]}x{image_size[1]}_c{num_classes}_s{'-'.join(map(str, strides))}"
            f"{'_grad' if with_grad else ''}{'' if with_audit else '_noaudit'}_{source_digest()}")
    path = cache_dir / f"{name}.onnx"
    if path.is_file():
        return path
    preset = Preset(name, tuple(image_size), tuple(strides), num_classes, mode, (1, 1, 1), (1, 1, 1), OPSET,
                    with_grad=with_grad)
    return export_onnx(preset, path, with_audit=with_audit)  # written atomically


def export_graphs(keys: Sequence[tuple], cache_dir: Path,
                  log: Callable[[str], None]) -> tuple[dict[tuple, str], list[dict]]:
    """Export the ONNX graphs of ``keys`` (see :func:`onnx_key`) into ``cache_dir``; returns ({key: path}, [export
    failures])."""
    paths, failures = {}, []
    for key in keys:
        start = time.perf_counter()
        try:
            paths[key] = str(ensure_onnx(key, cache_dir))
            log(f"onnx   {Path(paths[key]).name} ready ({time.perf_counter() - start:.1f} s)")
        except Exception as error:  # noqa: BLE001
            failures.append({"key": list(key), "error": f"{type(error).__name__}: {error}"})
            log(f"onnx   export failed for {key}: {error}")
    return paths, failures
