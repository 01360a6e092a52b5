"""The GPU check: its no-GPU form end to end (one line, exit 0, plumbing checked), the plumbing checks failing
where they should, and the verdict and markdown of hand-made result documents. What needs a GPU is in
tests/static/test_cuda.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolox_export import gpu_check
from yolox_export.gpu_check import GpuCheckOptions, gpu_check_passed, render_gpu_markdown, run_gpu_check

from support import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU form needs a machine without CUDA")
def test_without_a_gpu_the_script_says_so_in_one_line_and_exits_0(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(tmp_path / "r")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: nothing to check here: no CUDA device")
    assert lines[0].endswith("plumbing ok")
    assert not (tmp_path / "r" / "gpu.json").exists()  # nothing was measured, so nothing is written


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU form needs a machine without CUDA")
def test_without_a_gpu_the_document_says_why_and_lists_no_problem(tmp_path):
    doc = run_gpu_check(GpuCheckOptions(out=tmp_path))
    assert doc["ran"] is False and doc["plumbing_problems"] == []
    assert doc["reason"].startswith("no CUDA device")
    assert not gpu_check_passed(doc)
    assert render_gpu_markdown(doc).startswith("# GPU check\n\nNot run: no CUDA device")


def test_plumbing_reports_an_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    problems = gpu_check.plumbing_problems(GpuCheckOptions(out=blocker / "sub"))
    assert len(problems) == 1 and problems[0].startswith(f"output folder {blocker / 'sub'}")


def test_plumbing_reports_bad_settings(tmp_path):
    problems = gpu_check.plumbing_problems(GpuCheckOptions(out=tmp_path, batch=0))
    assert any(p.startswith("benchmark settings: batches") for p in problems), problems


def test_the_plan_covers_every_mode_and_the_cuda_subjects(tmp_path):
    options = GpuCheckOptions(out=tmp_path)
    settings = gpu_check.bench_settings(options)
    assert settings.batches == (16,) and settings.modes == options.modes
    assert set(gpu_check.GPU_SUBJECTS) <= set(settings.subjects)
    assert all(s.endswith("-cuda") or s in gpu_check.GPU_SUBJECTS for s in settings.subjects)
    presets = gpu_check.export_presets(options)
    assert sorted(presets) == sorted(options.modes)
    assert all(p.mode == mode and p.batch[1] == 16 for mode, p in presets.items())


def test_unknown_mode_is_a_one_line_error(capsys):
    assert load_script("gpu_check").main(["--modes", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --modes: unknown ['nope']") and "\n" not in err


def _ran_doc(tests_rc=0, checks_ok=True, parity=True) -> dict:
    bench = json.loads(json.dumps({"schema": 1, "created": "2026-12-01T00:00:00+00:00", "command": "x",
                                   "machine": {}, "versions": {}, "settings": {}, "skipped": [],
                                   "export_failures": [], "records": [], "targets": []}))
    return {"ran": True, "device": "NVIDIA H200", "seconds": 300.0, "created": "2026-12-01T00:00:00+00:00",
            "tests": {"ran": True, "returncode": tests_rc, "summary": "9 passed"},
            "exports": {"regular": {"checks_ok": checks_ok, "engine": "e.engine", "onnx": "m.onnx"}},
            "parity": {"regular": {"passed": parity, "table": "parity table"}}, "bench": bench}


@pytest.mark.parametrize("broken", [None, "tests", "exports", "parity"])
def test_the_verdict_needs_tests_exports_and_parity(broken):
    doc = _ran_doc(tests_rc=1 if broken == "tests" else 0, checks_ok=broken != "exports", parity=broken != "parity")
    assert gpu_check_passed(doc) is (broken is None)


def test_markdown_of_a_run_names_device_tests_exports_and_parity(monkeypatch):
    monkeypatch.setattr("yolox_export.bench.report.render_markdown", lambda results: "BENCH TABLES")
    text = render_gpu_markdown(dict(_ran_doc(), passed=True))
    assert text.startswith("# GPU check: PASS")
    for needle in ("NVIDIA H200", "9 passed (exit 0)", "export regular: checks ok; engine e.engine",
                   "## Parity, regular mode: PASS", "parity table", "BENCH TABLES"):
        assert needle in text
