"""One run that validates a CUDA machine: the CUDA tests, every mode exported (and built into a TensorRT engine
where TensorRT is installed), engine and onnxruntime-CUDA parity against the eager references, and the CUDA
benchmark (CUDA eager, a CUDA graph of forward and backward, the onnxruntime CUDA / TensorRT providers, the
references on CUDA) at B=16. It writes ``OUT/gpu.json`` and ``OUT/gpu.md``.

Without a CUDA device :func:`run_gpu_check` runs nothing on a GPU: it checks its own plumbing (the steps' modules
import, the benchmark settings and the export presets of every mode are valid, the output folder is writable) and
returns a document whose ``ran`` is False with the reason. The command line (``cli/gpu_check.py``) prints and picks
the exit code; this module never prints. It is a tool beside ``bench`` and ``parity`` (it runs both, and
pytest), not part of either package.
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .config import MODES, LossConfig
from .files import write_json, write_markdown

SCHEMA = 1
#: The benchmark subjects timed on the GPU (the CUDA references are added per mode).
GPU_SUBJECTS = ("static-cuda", "static-cudagraph", "ort-cuda", "ort-tensorrt")
#: pytest marker of the tests that need a CUDA device.
CUDA_MARKER = "cuda"


@dataclass(frozen=True)
class GpuCheckOptions:
    """What one GPU check covers. ``budget_s`` bounds the benchmark's per-measurement timing so that the whole run
    stays within about 8 minutes on one GPU."""

    out: Path = Path("results")
    modes: tuple[str, ...] = MODES
    batch: int = 16
    image_size: int = 640
    num_classes: int = 80
    parity_seeds: int = 1
    repeats: int = 10
    max_seconds: float = 5.0
    run_tests: bool = True


def cuda_unavailable_reason() -> str | None:
    """One line saying why there is no CUDA device to check, or None."""
    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return None


def bench_settings(options: GpuCheckOptions):
    """The benchmark settings of the GPU check: the target cases at B = ``options.batch`` on the CUDA subjects."""
    from .bench.settings import make_settings
    from .bench.subjects import REFERENCE_SUBJECTS

    references = tuple(REFERENCE_SUBJECTS[("cuda", mode)] for mode in options.modes)
    return make_settings("targets", out=options.out, batches=(options.batch,), image_sizes=(options.image_size,),
                         num_classes=options.num_classes, modes=options.modes, subjects=references + GPU_SUBJECTS,
                         repeats=options.repeats, max_seconds=options.max_seconds, isolate=False)


def export_presets(options: GpuCheckOptions) -> dict:
    """mode -> the export preset (default preset, the check's image size and classes, batch range up to B)."""
    from .export.presets import load_preset, with_overrides

    base = load_preset()
    return {mode: with_overrides(base, mode=mode, num_classes=options.num_classes,
                                 image_size=(options.image_size, options.image_size),
                                 batch=(1, options.batch, max(options.batch, 32)))
            for mode in options.modes}


def plumbing_problems(options: GpuCheckOptions) -> list[str]:
    """What would stop the GPU check before it reaches the GPU: each problem as one line (empty when fine)."""
    problems = []
    for what, build in (("benchmark settings", lambda: bench_settings(options)),
                        ("export presets", lambda: export_presets(options))):
        try:
            build()
        except (ValueError, TypeError, OSError) as error:
            problems.append(f"{what}: {error}")
    for module in ("yolox_export.export.pipeline", "yolox_export.export.tensorrt", "yolox_export.parity.comparison",
                   "yolox_export.bench.run"):
        try:
            __import__(module)
        except ImportError as error:
            problems.append(f"import {module}: {error}")
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problems.append(f"output folder {options.out}: {error}")
    return problems


def run_cuda_tests(log: Callable[[str], None]) -> dict:
    """The tests marked ``cuda`` (``pytest -m cuda``) in a subprocess; their closing line and exit code."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "tests").is_dir():
        return {"ran": False, "reason": f"no tests folder beside the package ({root / 'tests'})"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", CUDA_MARKER,
                             "tests"], cwd=root, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr.strip()[-300:]
    log(f"tests  pytest -m {CUDA_MARKER}: {summary}")
    return {"ran": True, "returncode": result.returncode, "summary": summary,
            "seconds": round(time.perf_counter() - start, 1)}


def export_modes(options: GpuCheckOptions, folder: Path, log: Callable[[str], None]) -> dict:
    """mode -> {onnx, checks_ok, engine | engine_skipped}: every mode exported and validated, and built into a
    TensorRT engine where TensorRT is installed."""
    from .export.pipeline import export_and_validate
    from .export.tensorrt import tensorrt_unavailable_reason

    trt_reason = tensorrt_unavailable_reason()
    results = {}
    for mode, preset in export_presets(options).items():
        engine = None if trt_reason else folder / f"{preset.name}.engine"
        entry: dict = {}
        try:
            report = export_and_validate(preset, folder / f"{preset.name}.onnx", engine=engine, time_it=False)
            entry.update(onnx=str(report.onnx_path), checks_ok=report.validation.ok,
                         problems=report.validation.problems())
            if report.engine_path is not None:
                entry["engine"] = str(report.engine_path)
            else:
                entry["engine_skipped"] = trt_reason or "the ONNX checks failed"
        except Exception as error:  # noqa: BLE001 - one failed mode is reported, the others still run
            entry.update(error=f"{type(error).__name__}: {error}")
        log(f"export {mode}: " + ("FAILED " + entry["error"] if "error" in entry else
                                  f"checks {'ok' if entry['checks_ok'] else 'FAILED'}, engine "
                                  + (entry.get("engine") or "not built: " + entry["engine_skipped"])))
        results[mode] = entry
    return results


def gpu_runners(entry: dict) -> dict:
    """subject -> runner on the GPU for one mode's exports (``runners.open_runner``): onnxruntime on the CUDA EP,
    the TensorRT engine."""
    from .export.runners import open_runner

    runners = {}
    if "onnx" in entry:
        runners["onnxruntime"] = open_runner("onnxruntime", entry["onnx"], providers=["CUDAExecutionProvider"])
    if "engine" in entry:
        runners["tensorrt"] = open_runner("tensorrt", entry["engine"])
    return runners


def gpu_parity(options: GpuCheckOptions, exports: dict, log: Callable[[str], None]) -> dict:
    """mode -> parity of the CUDA runners (and the static module) against the eager reference on the suite."""
    from .parity.comparison import compare
    from .parity.suite import build_suite

    batches = build_suite(seeds=options.parity_seeds, batch_size=2, image_size=(options.image_size,) * 2,
                          num_classes=options.num_classes)
    results = {}
    for mode in options.modes:
        config = LossConfig((8, 16, 32), options.num_classes, mode=mode)
        try:
            runners = gpu_runners(exports.get(mode, {}))
            report = compare(batches, config, ("static", *runners), runners=runners)
            results[mode] = {"passed": bool(report), "subjects": ["static", *runners], "report": report.to_dict(),
                             "table": str(report)}
            log(f"parity {mode}: {'PASS' if report else 'FAIL'} ({', '.join(['static', *runners])})")
        except Exception as error:  # noqa: BLE001 - reported per mode
            results[mode] = {"passed": False, "error": f"{type(error).__name__}: {error}"}
            log(f"parity {mode}: FAILED {results[mode]['error']}")
    return results


def gpu_benchmark(options: GpuCheckOptions, log: Callable[[str], None]) -> dict:
    """The benchmark's results document for :func:`bench_settings`."""
    from .bench.run import run_benchmark

    return run_benchmark(bench_settings(options), ["--gpu-check"], log=log)


def run_gpu_check(options: GpuCheckOptions = GpuCheckOptions(), log: Callable[[str], None] = lambda line: None
                  ) -> dict:
    """Run the whole check (see the module docstring); returns the document written to ``OUT/gpu.json``."""
    started = time.perf_counter()
    doc: dict = {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "options": {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in dataclasses.asdict(options).items()}}
    problems = plumbing_problems(options)
    reason = cuda_unavailable_reason()
    doc.update(plumbing_problems=problems, ran=reason is None and not problems)
    if reason is not None or problems:
        doc["reason"] = reason or "; ".join(problems)
        return doc
    doc["device"] = torch.cuda.get_device_name(0)
    doc["tests"] = run_cuda_tests(log) if options.run_tests else {"ran": False, "reason": "not asked"}
    folder = options.out / "gpu_models"
    folder.mkdir(parents=True, exist_ok=True)
    doc["exports"] = export_modes(options, folder, log)
    doc["parity"] = gpu_parity(options, doc["exports"], log)
    doc["bench"] = gpu_benchmark(options, log)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    doc["passed"] = gpu_check_passed(doc)
    return doc


def gpu_check_passed(doc: dict) -> bool:
    """True when the check ran and every part of it passed (the benchmark's speed targets are reported, not
    required)."""
    if not doc.get("ran"):
        return False
    tests = doc["tests"]
    exports_ok = all(e.get("checks_ok") for e in doc["exports"].values())
    parity_ok = all(p.get("passed") for p in doc["parity"].values())
    return (not tests.get("ran") or tests["returncode"] == 0) and exports_ok and parity_ok


def render_gpu_markdown(doc: dict) -> str:
    """``OUT/gpu.md``: the device, tests, exports, parity verdicts and tables, and the benchmark tables."""
    from .bench.report import render_markdown

    if not doc.get("ran"):
        return f"# GPU check\n\nNot run: {doc.get('reason')}.\n"
    lines = [f"# GPU check: {'PASS' if doc['passed'] else 'FAIL'}", "",
             f"Device: {doc['device']}; {doc['seconds']} s in all; created {doc['created']}.", ""]
    tests = doc["tests"]
    lines += [f"- CUDA tests (`pytest -m {CUDA_MARKER}`): "
              + (f"{tests['summary']} (exit {tests['returncode']})" if tests.get("ran") else f"not run: {tests['reason']}")]
    for mode, e in doc["exports"].items():
        state = e.get("error") or (f"checks {'ok' if e['checks_ok'] else 'FAILED'}; engine "
                                   + (e.get("engine") or "not built: " + e.get("engine_skipped", "")))
        lines.append(f"- export {mode}: {state}")
    lines.append("")
    for mode, p in doc["parity"].items():
        lines += [f"## Parity, {mode} mode: {'PASS' if p.get('passed') else 'FAIL'}", "", "```",
                  p.get("table") or p.get("error", ""), "```", ""]
    lines += ["## Benchmark", "", render_markdown(doc["bench"])]
    return "\n".join(lines) + "\n"


def write_gpu_outputs(doc: dict, out: Path) -> list[Path]:
    """Write ``out/gpu.json`` and ``out/gpu.md``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu.json", out / "gpu.md"
    write_json(json_path, doc, default=str)
    write_markdown(md_path, render_gpu_markdown(doc))
    return [json_path, md_path]


def run_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """``modes`` checked against :data:`config.MODES`; raises ValueError naming an unknown one."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"modes: unknown {unknown}; choose from {list(MODES)}")
    return tuple(dict.fromkeys(modes))
