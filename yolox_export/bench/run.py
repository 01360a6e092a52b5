"""One benchmark run: skip what cannot run here, export the graphs, run the jobs in workers, add ratios, machine
and versions, evaluate the targets; the results document that ``report`` renders."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Callable, Sequence

from .environment import library_versions, machine_info
from .memory import MEMORY_METHOD
from .onnx_cache import OPSET, export_graphs, onnx_key, source_digest
from .settings import STRIDES, Settings, plan_jobs
from .subjects import SUBJECTS, unavailable_reason
from .targets import add_ratios, evaluate_targets
from .worker import load_average, run_in_worker

SCHEMA = 1


def skipped_subjects(settings: Settings) -> tuple[list[str], list[dict]]:
    """(subjects to run, [{subject, reason}] for those that cannot run here)."""
    run, skipped = [], []
    for name in settings.subjects:
        reason = unavailable_reason(SUBJECTS[name])
        if reason:
            skipped.append({"subject": name, "label": SUBJECTS[name].label, "reason": reason})
        else:
            run.append(name)
    return run, skipped


def onnx_keys(settings: Settings) -> list[tuple]:
    """The graphs the ort subjects of ``settings`` need (none without an ort subject): with or without the gradient
    output and the audit outputs, as each subject times it."""
    variants = {(SUBJECTS[s].with_grad, SUBJECTS[s].with_audit) for s in settings.subjects
                if SUBJECTS[s].family == "ort"}
    return sorted({onnx_key(case, mode, with_grad, with_audit) for case in settings.cases()
                   for mode in settings.modes for with_grad, with_audit in variants})


def run_benchmark(settings: Settings, argv: Sequence[str] = (), log: Callable[[str], None] = lambda line: None,
                  progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Run every job of ``settings``; return the results document (see ``render_markdown`` for its use).
    ``progress("jobs", done, total)`` is called as each worker finishes (one job per worker with ``isolate``)."""
    subjects, skipped = skipped_subjects(settings)
    for entry in skipped:
        log(f"skip   {entry['subject']}: {entry['reason']}")
    settings = dataclasses.replace(settings, subjects=tuple(subjects))
    onnx_paths, export_failures = export_graphs(onnx_keys(settings), settings.onnx_cache, log)
    jobs, load_start = plan_jobs(settings, onnx_paths), load_average()
    batches = [[job] for job in jobs] if settings.isolate else [jobs]
    records, done = [], 0
    for batch in batches:
        if batch:
            records += run_in_worker(batch, settings.timeout, settings.omp_wait_policy, log)
            done += len(batch)
            if progress is not None:
                progress("jobs", done, len(jobs))
    add_ratios(records)
    machine = dict(machine_info(), load_average_start=load_start, load_average_end=load_average())
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python scripts/bench.py", *argv]), "machine": machine,
            "versions": library_versions(), "settings": _settings_json(settings), "skipped": skipped,
            "export_failures": export_failures, "records": records, "targets": evaluate_targets(records)}


def _settings_json(settings: Settings) -> dict:
    data = dataclasses.asdict(settings)
    data.update(out=str(settings.out), opset=OPSET, strides=list(STRIDES), onnx_source_digest=source_digest(),
                memory_method=MEMORY_METHOD + ("; fresh subprocess per (case, subject)" if settings.isolate
                                               else "; all subjects in one worker process, one after another"),
                timing_method="time.perf_counter per call (CUDA synchronised); median, inclusive IQR, min, max")
    return data
