"""Profiles of the static module: torch.profiler of the eager module and onnxruntime's node profile of the graph,
per case and mode, written to profile.md by a worker process."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..files import write_markdown
from .onnx_cache import export_graphs, onnx_key
from .run import onnx_keys
from .settings import Case, Job, Settings
from .steps import eager_step, feeds_of, make_inputs, open_ort_runner
from .subjects import MEASUREMENT_LABELS, MEASUREMENTS, SUBJECTS
from .worker import PROGRESS_PREFIX, _last_line, _run_streaming, _worker_env


def torch_profile(case: Case, mode: str, measurement: str, threads: int, top: int = 15) -> str:
    """torch.profiler table (self CPU time, with memory) of one StaticYoloXLoss eager call after one warm-up."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    job = Job(case, "static", mode, threads, 1, 0, 1.0)
    step = eager_step(job, SUBJECTS["static"], make_inputs(case, "cpu"), measurement)
    step.reset()
    step.call()
    step.reset()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        step.call()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40)


def ort_profile(case: Case, onnx_path: str, threads: int, top: int = 15) -> str:
    """onnxruntime's profiler over one run (after one warm-up) of the benchmark's runner: time by op type, then the
    slowest nodes."""
    with tempfile.TemporaryDirectory() as tmp:
        spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
        runner = open_ort_runner(onnx_path, "CPUExecutionProvider", threads, spinning=spinning,
                                 profile_prefix=str(Path(tmp) / "ort"))
        feeds = feeds_of(make_inputs(case, "cpu"))
        runner.run(feeds)
        runner.run(feeds)
        events = json.loads(Path(runner.session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    run_nodes = nodes[len(nodes) // 2:]  # the second run's nodes
    return _ort_profile_text(run_nodes, top)


def _ort_profile_text(nodes: list[dict], top: int) -> str:
    total = sum(e["dur"] for e in nodes) or 1
    by_op: dict[str, list[float]] = {}
    for e in nodes:
        by_op.setdefault(e.get("args", {}).get("op_name", "?"), []).append(e["dur"])
    lines = [f"total node time {total / 1e3:.1f} ms over {len(nodes)} nodes", "", "op type          ms      %   nodes"]
    for op, durs in sorted(by_op.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(f"{op:14s} {sum(durs) / 1e3:7.1f} {100 * sum(durs) / total:5.1f}% {len(durs):6d}")
    lines += ["", "slowest nodes                                         ms   op           output shape"]
    for e in sorted(nodes, key=lambda e: -e["dur"])[:top]:
        args = e.get("args", {})
        shapes = args.get("output_type_shape", "")
        lines.append(f"{e['name'][:-len('_kernel_time')][:50]:50s} {e['dur'] / 1e3:7.1f}   "
                     f"{args.get('op_name', '?'):12s} {json.dumps(shapes)[:60]}")
    return "\n".join(lines)


def profile_report(items: Sequence[tuple[Case, str, str | None]], threads: int,
                   log: Callable[[str], None] = lambda line: None) -> str:
    """Markdown with, per (case, mode, ONNX path): torch.profiler of StaticYoloXLoss eager (fwd, fwd+bwd) and
    onnxruntime's node profile. Runs in this process."""
    parts = ["# Profiles", "", f"{threads} threads, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'default')}; "
             "one call after one warm-up call.", ""]
    for case, mode, onnx_path in items:
        log(f"profile {case.label}, mode {mode}")
        parts += [f"## {case.label}, mode {mode}", ""]
        for measurement in MEASUREMENTS:
            parts += [f"### StaticYoloXLoss eager, {MEASUREMENT_LABELS[measurement]} (torch.profiler)", "", "```",
                      torch_profile(case, mode, measurement, threads).rstrip(), "```", ""]
        if onnx_path:
            parts += ["### ONNX graph, onnxruntime CPU (onnxruntime profiler)", "", "```",
                      ort_profile(case, onnx_path, threads), "```", ""]
    return "\n".join(parts)


def write_profiles(settings: Settings, log: Callable[[str], None] = lambda line: None) -> Path:
    """DIR/profile.md (``profile_report``) for every case and mode of ``settings``, in a worker process."""
    keys = onnx_keys(dataclasses.replace(settings, subjects=("ort-cpu",)))
    onnx_paths, _ = export_graphs(keys, settings.onnx_cache, log)
    items = [{"case": dataclasses.asdict(case), "mode": mode, "onnx": onnx_paths.get(onnx_key(case, mode))}
             for case in settings.cases() for mode in settings.modes]
    target = settings.out / "profile.md"
    settings.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "profile.json"
        spec.write_text(json.dumps({"threads": settings.threads, "items": items}))
        command = [sys.executable, "-m", "yolox_export.bench", "--profile", str(spec), str(target)]
        with open(Path(tmp) / "stderr", "w") as stderr:
            reason = _run_streaming(command, _worker_env(settings.threads, settings.omp_wait_policy), stderr,
                                    settings.timeout * max(1, len(items)), log)
        if reason:
            raise RuntimeError(f"profiling failed: {reason}: {_last_line((Path(tmp) / 'stderr').read_text())}")
    return target


def profile_main(argv: Sequence[str]) -> int:
    """``python -m yolox_export.bench --profile SPEC.json OUT.md``."""
    spec = json.loads(Path(argv[0]).read_text())
    warnings.simplefilter("ignore")
    items = [(Job.from_json({"case": item["case"], "subject": "static", "mode": item["mode"], "threads": 1,
                             "repeats": 1, "warmup": 0, "max_seconds": 1.0}).case, item["mode"], item["onnx"])
             for item in spec["items"]]
    report = profile_report(items, spec["threads"], lambda line: print(PROGRESS_PREFIX + line, flush=True))
    write_markdown(argv[1], report)
    return 0
