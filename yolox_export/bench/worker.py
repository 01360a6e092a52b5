"""Worker processes: each runs jobs in a fresh interpreter (``python -m yolox_export.bench``: clean heap,
allocator and thread pools, the OpenMP policy applied) and reports records and progress lines back. The workers
find the package because it is installed (editable in development and CI); nothing edits PYTHONPATH."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import LossConfig
from .memory import make_meter
from .settings import Job
from .steps import STEP_BUILDERS, Inputs, make_inputs, padded_max_gt
from .subjects import SUBJECTS, Subject
from .timing import summarise, time_step

def _base_record(job: Job, subject: Subject, measurement: str) -> dict:
    return {"case": dataclasses.asdict(job.case), "subject": subject.name, "label": subject.label,
            "family": subject.family, "mode": job.mode, "device": subject.device, "measurement": measurement,
            "threads": job.threads, "warmup": job.warmup, "status": "error", "error": None, "times_s": [],
            **summarise([]), "setup_s": None, "peak_extra_bytes": None, "memory_method": None, "loss": None}


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other processes on the machine disturb the timings."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def measure(job: Job, subject: Subject, inputs: Inputs, measurement: str) -> dict:
    """One record: build the step, time it, read its peak memory and its loss. Errors become the record's error."""
    record = dict(_base_record(job, subject, measurement), load_before=load_average())
    try:
        step = STEP_BUILDERS[subject.family](job, subject, inputs, measurement)
        meter = make_meter(subject)
        timing = time_step(step, subject.device, job.warmup, job.repeats, job.max_seconds, meter)
        record.update(summarise(timing.times_s), status="ok", times_s=timing.times_s, setup_s=step.setup_s,
                      peak_extra_bytes=timing.peak_extra_bytes, loss=step.loss(timing.last_output),
                      memory_method=None if meter is None else meter.method, load_after=load_average())
    except Exception as error:  # noqa: BLE001 - one subject failing must not stop the benchmark
        record["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return record


def run_job(job: Job) -> list[dict]:
    """Every measurement of one job, in this process. torch._dynamo is imported here, untimed: StaticYoloXLoss wraps
    its untraced ``__call__`` on first use, which would otherwise put that import (about a second) into the first
    timed call."""
    importlib.import_module("torch._dynamo")
    torch.set_num_threads(job.threads)
    subject = SUBJECTS[job.subject]
    box_format = LossConfig(tuple(job.case.strides), job.case.num_classes, mode=job.mode).box_format.name
    inputs = make_inputs(job.case, subject.device, box_format)
    shape = {"inputs_sha1": inputs.sha1, "num_targets": int(inputs.targets.shape[0]),
             "max_gt": padded_max_gt(inputs), "cells": job.case.cells}
    if job.onnx_path:
        shape["onnx_file"] = Path(job.onnx_path).name
    return [dict(measure(job, subject, inputs, m), **shape) for m in subject.measurements]


PROGRESS_PREFIX = "@@bench "


def _progress(record: dict) -> str:
    head = f"{record['case']['kind']:8s} B={record['case']['batch']:<3d} {record['case']['image_size'][0]:>4d}px " \
           f"{record['subject']:16s} {record['mode']:7s} {record['measurement']:7s}"
    if record["status"] != "ok":
        return f"{head} ERROR {record['error']}"
    peak = record["peak_extra_bytes"]
    memory = "" if peak is None else f"  peak +{peak / 2**20:.0f} MiB"
    return f"{head} {record['median_s'] * 1e3:10.1f} ms median of {record['n']}{memory}"


def worker_main(argv: Sequence[str]) -> int:
    """``python -m yolox_export.bench JOBS.json RESULTS.json``: run jobs in this fresh process, in order.

    The results file is rewritten after every job, so the jobs done before a crash keep their records; each
    record's progress line goes to stdout behind ``PROGRESS_PREFIX``."""
    jobs = [Job.from_json(data) for data in json.loads(Path(argv[0]).read_text())]
    warnings.simplefilter("ignore")
    done: list[list[dict]] = []
    for job in jobs:
        done.append(run_job(job))
        Path(argv[1]).write_text(json.dumps(done))
        for record in done[-1]:
            print(PROGRESS_PREFIX + _progress(record), flush=True)
    return 0


def _worker_env(threads: int, omp_wait_policy: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    return env


def run_in_worker(jobs: Sequence[Job], timeout: float, omp_wait_policy: str = "PASSIVE",
                  log: Callable[[str], None] = lambda line: None) -> list[dict]:
    """``run_job`` of every job in one fresh subprocess (clean heap, allocator and thread pools, the OpenMP policy
    applied); ``timeout`` is per job. Jobs a crash or timeout left unfinished become error records."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs_path, result_path, err_path = (Path(tmp) / name for name in ("jobs.json", "results.json", "stderr"))
        jobs_path.write_text(json.dumps([job.to_json() for job in jobs]))
        command = [sys.executable, "-m", "yolox_export.bench", str(jobs_path), str(result_path)]
        with open(err_path, "w") as stderr:
            reason = _run_streaming(command, _worker_env(jobs[0].threads, omp_wait_policy), stderr,
                                    timeout * len(jobs), log)
        done = json.loads(result_path.read_text()) if result_path.is_file() else []
        if reason is None and len(done) < len(jobs):
            reason = "worker stopped early: " + _last_line(err_path.read_text())
        elif reason is not None and reason.startswith("worker exited"):
            reason += ": " + _last_line(err_path.read_text())
    records = [record for job_records in done for record in job_records]
    return records + [record for job in jobs[len(done):] for record in _failed(job, reason)]


def _run_streaming(command: list[str], env: dict, stderr, timeout: float, log: Callable[[str], None]) -> str | None:
    """Run ``command``, forwarding its progress lines to ``log``; None on success, else why it failed."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    expired: list[bool] = []
    timer = threading.Timer(timeout, lambda: (expired.append(True), proc.kill()))
    timer.start()
    try:
        for line in proc.stdout:
            if line.startswith(PROGRESS_PREFIX):
                log(line[len(PROGRESS_PREFIX):].rstrip())
        code = proc.wait()
    finally:
        timer.cancel()
    if expired:
        return f"timed out after {timeout:.0f} s"
    if code < 0:
        return f"worker killed by signal {-code}" + (" (out of memory?)" if code == -9 else "")
    return None if code == 0 else f"worker exited with {code}"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"


def _failed(job: Job, reason: str) -> list[dict]:
    subject = SUBJECTS[job.subject]
    return [dict(_base_record(job, subject, m), error=reason) for m in subject.measurements]
