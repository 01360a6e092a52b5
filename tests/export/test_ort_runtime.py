"""Tests for yolox_export.export.ort_runtime on a tiny hand-built model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

from yolox_export.export.ort_runtime import DEFAULT_PROVIDERS, OrtRunner, default_providers, numpy_dtype  # noqa: E402


def _tiny_model() -> onnx.ModelProto:
    """predictions [N, 4] float, mask [N] bool -> masked_sum [N] = sum(predictions, -1) where mask else 0."""
    nodes = [
        helper.make_node("ReduceSum", ["predictions", "axes"], ["row_sum"], keepdims=0),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["row_sum", "mask_f"], ["masked_sum"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N"])],
        [helper.make_tensor_value_info("masked_sum", TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ort") / "tiny.onnx"
    onnx.save(_tiny_model(), path)
    return path


@pytest.fixture(scope="module")
def runner(model_path):
    return OrtRunner(model_path, providers=["CPUExecutionProvider"])


def _feeds(n=3):
    predictions = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    mask = np.arange(n) % 2 == 0
    return predictions, mask


def test_run_matches_numpy(runner):
    predictions, mask = _feeds()
    out = runner.run({"predictions": predictions, "mask": mask})
    assert list(out) == ["masked_sum"]
    np.testing.assert_allclose(out["masked_sum"], predictions.sum(-1) * mask, rtol=0, atol=0)


def test_run_accepts_torch_tensors(runner):
    predictions, mask = _feeds(5)
    out = runner.run({"predictions": torch.from_numpy(predictions), "mask": torch.from_numpy(mask)})
    torch.testing.assert_close(out["masked_sum"], torch.from_numpy(predictions.sum(-1) * mask))


def test_specs_and_providers(runner):
    specs = {spec.name: spec for spec in runner.input_specs}
    assert list(specs) == ["predictions", "mask"]
    assert specs["predictions"].shape == ("N", 4) and specs["predictions"].dtype == np.float32
    assert specs["mask"].ort_type == "tensor(bool)" and specs["mask"].dtype == np.bool_
    assert runner.output_names == ("masked_sum",)
    assert runner.providers == ["CPUExecutionProvider"]


def test_default_providers_keep_preference_order():
    assert default_providers(["CPUExecutionProvider", "TensorrtExecutionProvider"]) == [
        "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert default_providers(["AzureExecutionProvider"]) == []
    assert DEFAULT_PROVIDERS[-1] == "CPUExecutionProvider"


def test_default_runner_uses_available_providers(model_path):
    import onnxruntime

    runner = OrtRunner(model_path)
    assert runner.providers == default_providers(onnxruntime.get_available_providers())


def test_numpy_dtype_map():
    assert numpy_dtype("tensor(float)") == np.float32
    assert numpy_dtype("tensor(int64)") == np.int64
    assert numpy_dtype("tensor(bool)") == np.bool_
    assert numpy_dtype("tensor(bfloat16)") is None


def test_wrong_names_are_named(runner):
    predictions, mask = _feeds()
    with pytest.raises(ValueError, match=r"missing \['mask'\].*unexpected \['masks'\]"):
        runner.run({"predictions": predictions, "masks": mask})


def test_wrong_dtype_names_input_expected_and_got(runner):
    predictions, mask = _feeds()
    with pytest.raises(TypeError, match=r"'mask'.*bool.*got float32"):
        runner.run({"predictions": predictions, "mask": mask.astype(np.float32)})
    with pytest.raises(TypeError, match=r"'predictions'.*float32.*got float64"):
        runner.run({"predictions": predictions.astype(np.float64), "mask": mask})


def test_wrong_static_dim_is_named(runner):
    predictions, mask = _feeds()
    with pytest.raises(ValueError, match=r"'predictions'.*size 4 on axis 1.*\[3, 5\]"):
        runner.run({"predictions": np.zeros((3, 5), np.float32), "mask": mask})


def test_wrong_rank_is_named(runner):
    _, mask = _feeds()
    with pytest.raises(ValueError, match=r"'predictions'.*rank 2.*rank 3"):
        runner.run({"predictions": np.zeros((3, 4, 1), np.float32), "mask": mask})


def test_shared_dynamic_dim_must_agree(runner):
    predictions, _ = _feeds(3)
    with pytest.raises(ValueError, match=r"'N' is 3 in input 'predictions' but 2 in input 'mask'"):
        runner.run({"predictions": predictions, "mask": np.ones(2, bool)})


def test_non_array_feed_is_a_type_error(runner):
    _, mask = _feeds()
    with pytest.raises(TypeError, match="'predictions'.*list"):
        runner.run({"predictions": [[0.0] * 4] * 3, "mask": mask})


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        OrtRunner(tmp_path / "absent.onnx")


def test_corrupt_file_names_path(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"this is not a protobuf \x00\xff\xfe")
    with pytest.raises(ValueError, match="corrupt.onnx"):
        OrtRunner(path, providers=["CPUExecutionProvider"])


def test_unavailable_provider_is_refused(model_path):
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        OrtRunner(model_path, providers=["NoSuchExecutionProvider"])


def test_missing_onnxruntime_gives_install_hint(model_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install yolox-export\[cpu\]"):
        OrtRunner(model_path)


def test_validate_false_leaves_checks_to_onnxruntime(model_path):
    runner = OrtRunner(model_path, providers=["CPUExecutionProvider"], validate=False)
    predictions, mask = _feeds()
    with pytest.raises(Exception) as info:
        runner.run({"predictions": predictions, "mask": mask.astype(np.float32)})
    assert not isinstance(info.value, TypeError)


def test_session_options_reach_the_session_through_open_runner(model_path, tmp_path):
    from yolox_export.export.runners import open_runner

    runner = open_runner("onnxruntime", model_path, providers=["CPUExecutionProvider"],
                         session_options={"threads": 1, "spinning": False, "profile_prefix": str(tmp_path / "p")})
    assert isinstance(runner, OrtRunner)
    predictions, mask = _feeds()
    runner.run({"predictions": predictions, "mask": mask})
    profile = runner.session.end_profiling()  # profiling was switched on by the session options
    assert profile.startswith(str(tmp_path / "p")) and (tmp_path / profile).is_file()


@pytest.mark.cuda
def test_cuda_feeds_on_a_cuda_session_stay_on_the_device(model_path):
    import onnxruntime

    if not torch.cuda.is_available() or "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs a CUDA device and onnxruntime's CUDAExecutionProvider")
    runner = OrtRunner(model_path, providers=["CUDAExecutionProvider"])
    predictions, mask = _feeds(6)
    out = runner.run({"predictions": torch.from_numpy(predictions).cuda(), "mask": torch.from_numpy(mask).cuda()})
    assert out["masked_sum"].is_cuda  # bound in place through IOBinding, written into a torch CUDA tensor
    torch.testing.assert_close(out["masked_sum"].cpu(), torch.from_numpy(predictions.sum(-1) * mask))
    with pytest.raises(TypeError, match="input 'mask': expected dtype bool"):
        runner.run({"predictions": torch.from_numpy(predictions).cuda(), "mask": torch.ones(6, device="cuda")})


def test_onnxruntime_runner_g0_is_named_b0_is_eagers_result_and_failures_name_the_inputs(shared_export, ort_runner):
    from support import SHARED_CELLS, SHARED_CLASSES, SHARED_SHAPES, contract_feeds, shared_config
    from yolox_export.export.runners import EagerRunner

    mode, path = shared_export
    runner = ort_runner(path)
    with pytest.raises(ValueError, match=r"'targets' has G = 0 target slots"):
        runner.run(contract_feeds(2, 0, SHARED_CELLS, SHARED_CLASSES))
    feeds = contract_feeds(0, 3, SHARED_CELLS, SHARED_CLASSES)
    got = runner.run(feeds)
    want = EagerRunner(shared_config(mode), SHARED_SHAPES, with_targets=True).run(feeds)
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape and torch.equal(got[name], want[name]), name

    unchecked = OrtRunner(path, providers=["CPUExecutionProvider"], validate=False)
    with pytest.raises(RuntimeError, match=r"onnxruntime failed on inputs predictions \[2, \d+, \d+\] float32, "
                                           r"targets \[2, 0, 5\]"):
        unchecked.run(contract_feeds(2, 0, SHARED_CELLS, SHARED_CLASSES))


# ---------------------------------------------------------------------------------------------------------------
# Bad feeds and files. The stand-in model has the exported
# graph's exact inputs (test_properties.py checks them against a real export); every bad feed raises before the
# session runs.

CELLS = 16


def exported_signature_model():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceSum", ["predictions", "axis2"], ["cell_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["targets", "axis2"], ["slot_sum"], keepdims=0),
        helper.make_node("Cast", ["target_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["slot_sum", "mask_f"], ["masked"]),
    ]
    graph = helper.make_graph(
        nodes, "signature",
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["batch", CELLS, 5 + 1]),
         helper.make_tensor_value_info("targets", TensorProto.FLOAT, ["batch", "max_gt", 5]),
         helper.make_tensor_value_info("target_mask", TensorProto.BOOL, ["batch", "max_gt"])],
        [helper.make_tensor_value_info("cell_sum", TensorProto.FLOAT, ["batch", CELLS]),
         helper.make_tensor_value_info("masked", TensorProto.FLOAT, ["batch", "max_gt"])],
        initializer=[numpy_helper.from_array(np.array([2], np.int64), "axis2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def signature_model(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    import onnx

    path = tmp_path_factory.mktemp("ort_validation") / "signature.onnx"
    onnx.save(exported_signature_model(), path)
    return path


class CountingSession:
    """Wraps an InferenceSession and counts runs."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


def good_feeds(batch=2, max_gt=3):
    return {"predictions": np.zeros((batch, CELLS, 6), np.float32),
            "targets": np.zeros((batch, max_gt, 5), np.float32),
            "target_mask": np.ones((batch, max_gt), bool)}


def bad_feed(kind):
    feeds = good_feeds()
    if kind == "mask-missing":
        del feeds["target_mask"]
    elif kind == "mask-float":
        feeds["target_mask"] = feeds["target_mask"].astype(np.float32)
    elif kind == "targets-int64":
        feeds["targets"] = feeds["targets"].astype(np.int64)
    elif kind == "predictions-float64":
        feeds["predictions"] = feeds["predictions"].astype(np.float64)
    elif kind == "predictions-fp16-tensor":
        feeds["predictions"] = torch.zeros((2, CELLS, 6), dtype=torch.float16)
    elif kind == "targets-4-columns":
        feeds["targets"] = feeds["targets"][..., :4]
    elif kind == "wrong-cell-count":
        feeds["predictions"] = np.zeros((2, CELLS + 1, 6), np.float32)
    elif kind == "levels-not-flattened":
        feeds["predictions"] = np.zeros((2, 1, 4, 4, 6), np.float32)
    elif kind == "batch-differs":
        feeds["targets"] = np.zeros((3, 3, 5), np.float32)
    elif kind == "max-gt-differs":
        feeds["target_mask"] = np.ones((2, 4), bool)
    return feeds


BAD_FEEDS = {
    "mask-missing": (ValueError, r"missing \['target_mask'\]"),
    "mask-float": (TypeError, r"'target_mask'.*bool.*got float32"),
    "targets-int64": (TypeError, r"'targets'.*float32.*got int64"),
    "predictions-float64": (TypeError, r"'predictions'.*float32.*got float64"),
    "predictions-fp16-tensor": (TypeError, r"'predictions'.*float32.*got float16"),
    "targets-4-columns": (ValueError, r"'targets': expected size 5 on axis 2 \(shape \[batch, max_gt, 5\]\), got shape \[2, 3, 4\]"),
    "wrong-cell-count": (ValueError, r"'predictions': expected size 16 on axis 1 .*got shape \[2, 17, 6\]"),
    "levels-not-flattened": (ValueError, r"'predictions': expected rank 3 .*got rank 5"),
    "batch-differs": (ValueError, r"dimension 'batch' is 2 in input 'predictions' but 3 in input 'targets'"),
    "max-gt-differs": (ValueError, r"dimension 'max_gt' is 3 in input 'targets' but 4 in input 'target_mask'"),
}


@pytest.mark.parametrize("kind", BAD_FEEDS)
def test_ort_bad_feed_raises_before_the_session_runs(signature_model, kind):
    from yolox_export.export.ort_runtime import OrtRunner

    runner = OrtRunner(signature_model, providers=["CPUExecutionProvider"])
    counting = CountingSession(runner._session)
    runner._session = counting
    runner.run(good_feeds())
    assert counting.runs == 1
    error, pattern = BAD_FEEDS[kind]
    with pytest.raises(error, match=pattern):
        runner.run(bad_feed(kind))
    assert counting.runs == 1


def test_ort_empty_file(tmp_path):
    pytest.importorskip("onnxruntime")
    from yolox_export.export.ort_runtime import OrtRunner

    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"onnxruntime cannot load .*empty\.onnx"):
        OrtRunner(path, providers=["CPUExecutionProvider"])


def test_ort_truncated_model(tmp_path, signature_model):
    from yolox_export.export.ort_runtime import OrtRunner

    data = signature_model.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"onnxruntime cannot load .*truncated\.onnx"):
        OrtRunner(path, providers=["CPUExecutionProvider"])


def test_ort_directory_is_not_a_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from yolox_export.export.ort_runtime import OrtRunner

    with pytest.raises(FileNotFoundError, match=rf"ONNX model not found: {tmp_path}"):
        OrtRunner(tmp_path)
