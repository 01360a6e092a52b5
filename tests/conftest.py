"""pytest's hooks and fixtures for the suite (options, the exported graphs shared per session); shared helpers
are in ``support.py`` (``from support import ...``)."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from yolox_export.config import MODES
from support import (COMPILED_MODES, GRAD_EXPORT_SKIP, INDUCTOR_MODES, grad_config, grad_preset,  # noqa: F401
                     shared_config, shared_preset)


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="run the long forms of the slow tests (fixture `full`), e.g. tests/parity's 1000 targets "
                          "per image at B=2 instead of B=1")


def pytest_configure(config):
    config.addinivalue_line("markers", "full: a test with a reduced default form and a long one under --full")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per worker: the workers share the CPU's cores
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def full(request) -> bool:
    """True under ``pytest --full``: run the long form of a test whose default form is reduced."""
    return bool(request.config.getoption("--full"))


@pytest.fixture(scope="session")
def exported_graph(tmp_path_factory):
    """``exported_graph(preset, config=None, with_targets=False, targets_per_chunk=None) -> Path``: ``export_onnx``'s
    graph for those settings, exported once per test run (10-20 s an export on a CPU) and shared by every test that
    asks for the same settings, also across pytest-xdist workers: the file lives in the run's shared temporary folder
    under a name derived from the key, and a file lock makes one worker export it while the others wait. The key is
    every preset field but the name (which only names the file), the config (``preset_config`` when None),
    ``with_targets`` and ``targets_per_chunk``. The stages the export reported (``export_onnx``'s progress) are
    written beside it, as JSON in ``<path>.stages.json``. The file is shared: read it, never write it."""
    pytest.importorskip("onnxscript")
    from filelock import FileLock

    from yolox_export.export.onnx_export import export_onnx, preset_config

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "exported"
    folder.mkdir(exist_ok=True)

    def get(preset, config=None, with_targets=False, targets_per_chunk=None) -> Path:
        config = config or preset_config(preset)
        key = repr((dataclasses.replace(preset, name="graph"), config, bool(with_targets), targets_per_chunk))
        path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}_{preset.name}.onnx"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                stages = []
                export_onnx(preset, path, with_targets=with_targets, config=config,
                            targets_per_chunk=targets_per_chunk,
                            progress=lambda stage, done, total: stages.append([stage, done, total]))
                Path(str(path) + ".stages.json").write_text(json.dumps(stages))
        return path

    return get


@pytest.fixture(scope="session")
def ort_runner():
    """``ort_runner(path) -> OrtRunner`` on the CPU execution provider, one session per path."""
    pytest.importorskip("onnxruntime")
    from yolox_export.export.ort_runtime import OrtRunner

    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = OrtRunner(path, providers=["CPUExecutionProvider"])
        return cache[path]

    return get


@pytest.fixture(scope="module", params=MODES)
def shared_export(request, exported_graph):
    """(mode, path) of the shared graph (``shared_preset``, ``shared_config``, with targets), once per mode."""
    mode = request.param
    return mode, exported_graph(shared_preset(mode), shared_config(mode), with_targets=True)


def pytest_generate_tests(metafunc):
    if "grad_mode" in metafunc.fixturenames:
        full = metafunc.config.getoption("--full")
        modes = MODES if full else [pytest.param(MODES[0], marks=pytest.mark.skip(reason=GRAD_EXPORT_SKIP))]
        metafunc.parametrize("grad_mode", modes, scope="module")
    if "compiled_mode" in metafunc.fixturenames:  # the compiled runner: see COMPILED_MODES
        metafunc.parametrize("compiled_mode", MODES if metafunc.config.getoption("--full") else COMPILED_MODES)
    if "inductor_mode" in metafunc.fixturenames:  # the drop-in under inductor: see INDUCTOR_MODES
        metafunc.parametrize("inductor_mode", MODES if metafunc.config.getoption("--full") else INDUCTOR_MODES)
    if "trace_mode" in metafunc.fixturenames:  # the gradient graph's trace: first mode, every mode under --full
        metafunc.parametrize("trace_mode", MODES if metafunc.config.getoption("--full") else MODES[:1],
                             scope="module")


@pytest.fixture(scope="module")
def grad_export(exported_graph, grad_mode):
    """(mode, path) of the shared gradient graph (``grad_preset``, ``grad_config``, no targets)."""
    return grad_mode, exported_graph(grad_preset(grad_mode), grad_config(grad_mode))
