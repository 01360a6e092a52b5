"""Tests for yolox_export.export.tensorrt: everything that runs without TensorRT, and a build where it exists."""

from __future__ import annotations

import enum
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from yolox_export.export import tensorrt as trt_export
from yolox_export.export.tensorrt import (
    EngineBuildError,
    TensorRTUnavailable,
    build_engine,
    check_profiles,
    tensorrt_unavailable_reason,
    torch_dtype,
)

REASON = tensorrt_unavailable_reason()


def _tiny_onnx(path):
    """x [N, 4] float, mask [N] bool -> y [N] = sum(x, -1) * mask."""
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
        helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["s", "m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


PROFILES = {"x": ((1, 4), (4, 4), (8, 4)), "mask": ((1,), (4,), (8,))}


def test_module_imports_without_tensorrt():
    """Import in a fresh interpreter where ``import tensorrt`` fails, even on machines that have TensorRT."""
    code = (
        "import sys; sys.modules['tensorrt'] = None\n"
        "from yolox_export.export import tensorrt as m\n"
        "reason = m.tensorrt_unavailable_reason()\n"
        "assert reason.startswith('TensorRT is not installed'), reason\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_unavailable_reason_is_one_line_or_none():
    reason = tensorrt_unavailable_reason()
    try:
        import tensorrt  # noqa: F401
        installed = True
    except (ImportError, OSError):
        installed = False
    expected_available = installed and torch.cuda.is_available()
    assert (reason is None) == expected_available
    if reason is not None:
        assert reason.strip() and "\n" not in reason


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here")
def test_build_engine_raises_unavailable(tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(TensorRTUnavailable) as info:
        build_engine(onnx_path, tmp_path / "tiny.engine", PROFILES)
    assert str(info.value) == REASON
    assert not (tmp_path / "tiny.engine").exists()


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here")
def test_runner_raises_unavailable(tmp_path):
    engine = tmp_path / "fake.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(TensorRTUnavailable):
        trt_export.TensorRTRunner(engine)


def test_build_engine_checks_arguments_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "x.engine", PROFILES)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ValueError, match="min <= opt <= max"):
        build_engine(onnx_path, tmp_path / "x.engine", {"x": ((1, 4), (8, 4), (4, 4))})
    with pytest.raises(ValueError, match="workspace_bytes"):
        build_engine(onnx_path, tmp_path / "x.engine", PROFILES, workspace_bytes=0)


def test_runner_missing_engine(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.engine"):
        trt_export.TensorRTRunner(tmp_path / "absent.engine")


def test_check_profiles():
    assert check_profiles({"x": [[1, 4], [4, 4], [8, 4]]}) == {"x": ((1, 4), (4, 4), (8, 4))}
    with pytest.raises(ValueError, match="'x'.*3 shapes|'x'.*got 2 shapes"):
        check_profiles({"x": ((1, 4), (8, 4))})
    with pytest.raises(ValueError, match="'x'.*different ranks"):
        check_profiles({"x": ((1, 4), (4,), (8, 4))})
    with pytest.raises(ValueError, match="'x'.*non-negative"):
        check_profiles({"x": ((-1, 4), (4, 4), (8, 4))})


def test_torch_dtype_maps_by_name():
    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT64 = 2
        BOOL = 3
        INT4 = 4

    assert torch_dtype(DataType.FLOAT) is torch.float32
    assert torch_dtype(DataType.HALF) is torch.float16
    assert torch_dtype(DataType.INT64) is torch.int64
    assert torch_dtype(DataType.BOOL) is torch.bool
    with pytest.raises(TypeError, match="INT4"):
        torch_dtype(DataType.INT4)


def test_network_flags_handle_missing_strongly_typed():
    class WithFlag:
        class NetworkDefinitionCreationFlag:
            STRONGLY_TYPED = 3

    class WithoutFlag:
        class NetworkDefinitionCreationFlag:
            pass

    assert trt_export._network_flags(WithFlag) == 1 << 3
    assert trt_export._network_flags(WithoutFlag) == 0


def test_profile_must_fit_network_inputs():
    inputs = {"x": (-1, 4), "mask": (-1,)}
    checked = check_profiles(PROFILES)
    assert trt_export._profile_for(inputs, checked) == checked
    with pytest.raises(ValueError, match="'mask'.*no \\(min, opt, max\\) profile"):
        trt_export._profile_for(inputs, {"x": checked["x"]})
    with pytest.raises(ValueError, match=r"\['y'\]"):
        trt_export._profile_for(inputs, {**checked, "y": checked["mask"]})
    with pytest.raises(ValueError, match="'x'.*does not fit"):
        trt_export._profile_for(inputs, {**checked, "x": check_profiles({"x": ((1, 5), (4, 5), (8, 5))})["x"]})


@pytest.mark.cuda
def test_build_and_run_engine(tmp_path):
    if REASON is not None:
        pytest.skip(REASON)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    engine = build_engine(onnx_path, tmp_path / "tiny.engine", PROFILES)
    assert engine.is_file()
    runner = trt_export.TensorRTRunner(engine)
    assert set(runner.input_names) == {"x", "mask"} and runner.output_names == ("y",)
    x = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    mask = torch.tensor([True, False, True, True, False])
    out = runner.run({"x": x, "mask": mask})
    torch.testing.assert_close(out["y"].cpu(), x.sum(-1) * mask)
    with pytest.raises(TypeError, match="'mask'"):
        runner.run({"x": x, "mask": mask.float()})
    with pytest.raises(ValueError, match="profile"):
        runner.run({"x": torch.zeros(9, 4), "mask": torch.ones(9, dtype=torch.bool)})


@pytest.mark.cuda
def test_parser_errors_are_collected(tmp_path):
    if REASON is not None:
        pytest.skip(REASON)
    graph = helper.make_graph([helper.make_node("Unique", ["x"], ["y"], name="bad_unique")], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(EngineBuildError, match="bad.onnx"):
        build_engine(path, tmp_path / "bad.engine", {})
