"""Tests for yolox_export.export.trt_compat on small hand-built graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolox_export.export import trt_compat
from yolox_export.export.trt_compat import (
    FORBIDDEN_OPS,
    PARSER_TABLE_VERSION,
    SUPPORTED_OPS,
    Problem,
    check_tensorrt_compatibility,
    constant_tensors,
    find_forbidden_ops,
)

OPSET = 20


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name, elem_type, shape):
    return helper.make_tensor_value_info(name, elem_type, shape)


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _single(node, inputs, outputs, initializers=()):
    return _model([node], inputs, outputs, initializers)


def _ops_reported(problems):
    return [(p.node, p.op_type) for p in problems]


def test_clean_graph_has_no_problems():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
        helper.make_node("TopK", ["s", "k"], ["vals", "idx"], name="topk", axis=-1),
        helper.make_node("ReduceSum", ["vals", "axes"], ["sum"], name="rsum", keepdims=0),
        helper.make_node("CumSum", ["s", "axis"], ["cs"], name="cumsum"),
        helper.make_node("Not", ["mask"], ["notmask"], name="not"),
        helper.make_node("Where", ["notmask", "cs", "s"], ["sel"], name="where"),
        helper.make_node("Equal", ["idx", "idx"], ["same"], name="eq"),
        helper.make_node("Constant", [], ["depth"], name="depth_const", value=_const("d", np.array(3, np.int64))),
        helper.make_node("OneHot", ["idx", "depth", "onoff"], ["oh"], name="onehot"),
        helper.make_node("ScatterElements", ["s", "idx", "vals"], ["sc"], name="scatter", axis=1),
    ]
    model = _model(
        nodes,
        [_value("x", TensorProto.FLOAT, ["N", 8]), _value("mask", TensorProto.BOOL, ["N", 8])],
        [
            _value("sum", TensorProto.FLOAT, ["N"]),
            _value("sel", TensorProto.FLOAT, ["N", 8]),
            _value("same", TensorProto.BOOL, ["N", 3]),
            _value("oh", TensorProto.FLOAT, ["N", 3, 3]),
            _value("sc", TensorProto.FLOAT, ["N", 8]),
        ],
        [
            _const("k", np.array([3], np.int64)),
            _const("axes", np.array([1], np.int64)),
            _const("axis", np.array(1, np.int64)),
            _const("onoff", np.array([0.0, 1.0], np.float32)),
        ],
    )
    onnx.checker.check_model(model, full_check=True)
    assert check_tensorrt_compatibility(model) == []
    assert find_forbidden_ops(model) == []


def test_nonzero_is_forbidden():
    model = _single(helper.make_node("NonZero", ["x"], ["nz"], name="planted"),
                    [_value("x", TensorProto.FLOAT, [4])], [_value("nz", TensorProto.INT64, [1, None])])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("planted", "NonZero")]
    assert "data" in problems[0].message
    forbidden = find_forbidden_ops(model)
    assert len(forbidden) == 1 and "planted" in forbidden[0] and "NonZero" in forbidden[0]


def test_loop_is_forbidden_and_its_body_is_checked():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("NonZero", ["v_in"], ["nz"], name="inner_nonzero"),
         helper.make_node("Identity", ["v_in"], ["v_out"], name="carry")],
        "body",
        [_value("i", TensorProto.INT64, []), _value("cond_in", TensorProto.BOOL, []),
         _value("v_in", TensorProto.FLOAT, [4])],
        [_value("cond_out", TensorProto.BOOL, []), _value("v_out", TensorProto.FLOAT, [4])],
    )
    loop = helper.make_node("Loop", ["trip", "cond", "v"], ["v_final"], name="outer_loop", body=body)
    model = _single(loop, [_value("v", TensorProto.FLOAT, [4]), _value("cond", TensorProto.BOOL, [])],
                    [_value("v_final", TensorProto.FLOAT, [4])], [_const("trip", np.array(3, np.int64))])
    reported = _ops_reported(check_tensorrt_compatibility(model))
    assert ("outer_loop", "Loop") in reported
    assert ("outer_loop/body/inner_nonzero", "NonZero") in reported
    assert len(find_forbidden_ops(model)) == 2


def _topk_model(k_array=None, **attrs):
    inputs = [_value("x", TensorProto.FLOAT, [1, 5000])]
    initializers = []
    if k_array is None:
        inputs.append(_value("k", TensorProto.INT64, [1]))
    else:
        initializers.append(_const("k", k_array))
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", **attrs)
    return _single(node, inputs, [_value("v", TensorProto.FLOAT, [1, None]), _value("i", TensorProto.INT64, [1, None])],
                   initializers)


def test_topk_small_constant_k_passes():
    assert check_tensorrt_compatibility(_topk_model(np.array([3839], np.int64))) == []


@pytest.mark.parametrize("k", [3840, 4000])
def test_topk_large_k_is_caught(k):
    problems = check_tensorrt_compatibility(_topk_model(np.array([k], np.int64)))
    assert _ops_reported(problems) == [("topk", "TopK")]
    assert f"K={k}" in problems[0].message and "3840" in problems[0].message


def test_topk_k_from_constant_node_is_read():
    nodes = [helper.make_node("Constant", [], ["k"], name="kc", value_ints=[4000]),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")]
    model = _model(nodes, [_value("x", TensorProto.FLOAT, [1, 5000])],
                   [_value("v", TensorProto.FLOAT, [1, None]), _value("i", TensorProto.INT64, [1, None])])
    problems = check_tensorrt_compatibility(model)
    assert [p.op_type for p in problems] == ["TopK"] and "K=4000" in problems[0].message


def test_topk_unsorted_is_caught():
    problems = check_tensorrt_compatibility(_topk_model(np.array([10], np.int64), sorted=0))
    assert _ops_reported(problems) == [("topk", "TopK")]
    assert "sorted=0" in problems[0].message


def test_topk_non_constant_k_is_caught():
    problems = check_tensorrt_compatibility(_topk_model(None))
    assert _ops_reported(problems) == [("topk", "TopK")]
    assert "not a constant" in problems[0].message


def test_reduce_with_non_constant_axes_is_caught():
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="rsum")
    model = _single(node, [_value("x", TensorProto.FLOAT, [2, 3]), _value("axes", TensorProto.INT64, [1])],
                    [_value("y", TensorProto.FLOAT, None)])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("rsum", "ReduceSum")]
    assert "axes" in problems[0].message


def test_reduce_with_axes_attribute_passes():
    node = helper.make_node("ReduceMax", ["x"], ["y"], name="rmax", axes=[1])
    model = _model([node], [_value("x", TensorProto.FLOAT, [2, 3])], [_value("y", TensorProto.FLOAT, None)], opset=17)
    assert check_tensorrt_compatibility(model) == []


def test_cumsum_on_int64_is_caught():
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name="cs")
    model = _single(node, [_value("x", TensorProto.INT64, [4])], [_value("y", TensorProto.INT64, [4])],
                    [_const("axis", np.array(0, np.int64))])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("cs", "CumSum")]
    assert "INT64" in problems[0].message


def test_cumsum_type_comes_from_shape_inference():
    nodes = [helper.make_node("Cast", ["x"], ["xi"], name="to_int", to=TensorProto.INT32),
             helper.make_node("CumSum", ["xi", "axis"], ["y"], name="cs")]
    model = _model(nodes, [_value("x", TensorProto.FLOAT, [4])], [_value("y", TensorProto.INT32, [4])],
                   [_const("axis", np.array(0, np.int64))])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("cs", "CumSum")] and "INT32" in problems[0].message


def test_cumsum_non_constant_axis_is_caught():
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name="cs")
    model = _single(node, [_value("x", TensorProto.FLOAT, [4]), _value("axis", TensorProto.INT64, [])],
                    [_value("y", TensorProto.FLOAT, [4])])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("cs", "CumSum")] and "axis" in problems[0].message


@pytest.mark.parametrize("op", ["Equal", "Less", "GreaterOrEqual"])
def test_comparison_on_bool_is_caught(op):
    node = helper.make_node(op, ["a", "b"], ["y"], name="cmp")
    model = _single(node, [_value("a", TensorProto.BOOL, [4]), _value("b", TensorProto.BOOL, [4])],
                    [_value("y", TensorProto.BOOL, [4])])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("cmp", op)]
    assert "BOOL" in problems[0].message


def test_scatter_elements_with_reduction_is_caught():
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], name="scatter", axis=0, reduction="add")
    model = _single(node, [_value("x", TensorProto.FLOAT, [4]), _value("i", TensorProto.INT64, [2]),
                           _value("u", TensorProto.FLOAT, [2])], [_value("y", TensorProto.FLOAT, [4])])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("scatter", "ScatterElements")]
    assert "'add'" in problems[0].message


def test_onehot_with_non_constant_depth_is_caught():
    node = helper.make_node("OneHot", ["i", "depth", "onoff"], ["y"], name="onehot")
    model = _single(node, [_value("i", TensorProto.INT64, [4]), _value("depth", TensorProto.INT64, [])],
                    [_value("y", TensorProto.FLOAT, [4, None])], [_const("onoff", np.array([0.0, 1.0], np.float32))])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("onehot", "OneHot")]
    assert "depth" in problems[0].message


@pytest.mark.parametrize("op", ["Unique", "Det", "NegativeLogLikelihoodLoss"])
def test_unsupported_ops_are_caught(op):
    node = helper.make_node(op, ["x"], ["y"], name="bad")
    model = _single(node, [_value("x", TensorProto.FLOAT, [4, 4])], [_value("y", TensorProto.FLOAT, None)])
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("bad", op)]
    assert ("forbidden" in problems[0].message) == (op in FORBIDDEN_OPS)
    assert (PARSER_TABLE_VERSION in problems[0].message) == (op not in SUPPORTED_OPS)


def test_custom_domain_op_is_caught():
    node = helper.make_node("FancyOp", ["x"], ["y"], name="custom", domain="com.example")
    graph = helper.make_graph([node], "g", [_value("x", TensorProto.FLOAT, [4])], [_value("y", TensorProto.FLOAT, [4])])
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    problems = check_tensorrt_compatibility(model)
    assert _ops_reported(problems) == [("custom", "FancyOp")] and "com.example" in problems[0].message


def test_local_function_body_is_checked():
    function = helper.make_function("local", "Wrapper", ["a"], ["b"],
                                    [helper.make_node("NonZero", ["a"], ["b"], name="hidden")],
                                    [helper.make_opsetid("", OPSET)])
    node = helper.make_node("Wrapper", ["x"], ["y"], name="call", domain="local")
    graph = helper.make_graph([node], "g", [_value("x", TensorProto.FLOAT, [4])],
                              [_value("y", TensorProto.INT64, [1, None])])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("local", 1)])
    assert _ops_reported(check_tensorrt_compatibility(model)) == [("call/hidden", "NonZero")]


def test_opset_outside_parser_range_is_caught():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_value("x", TensorProto.FLOAT, [4])],
                   [_value("y", TensorProto.FLOAT, [4])], opset=8)
    problems = check_tensorrt_compatibility(model)
    assert [p.op_type for p in problems] == ["opset"] and "8" in problems[0].message


def test_graph_input_type_trt_lacks_is_caught():
    model = _single(helper.make_node("Identity", ["x"], ["y"], name="id"), [_value("x", TensorProto.UINT16, [4])],
                    [_value("y", TensorProto.UINT16, [4])])
    reported = _ops_reported(check_tensorrt_compatibility(model))
    assert reported == [("x", "graph input"), ("y", "graph output")]


def test_unnamed_nodes_get_a_position_name():
    model = _single(helper.make_node("NonZero", ["x"], ["nz"]), [_value("x", TensorProto.FLOAT, [4])],
                    [_value("nz", TensorProto.INT64, [1, None])])
    (problem,) = check_tensorrt_compatibility(model)
    assert problem.node == "<unnamed NonZero #0>"


def test_problem_str_names_node_and_op():
    problem = Problem("n1", "TopK", "sorted=0")
    assert str(problem) == "TopK 'n1': sorted=0"
    with pytest.raises(AttributeError):
        problem.node = "other"


def test_constant_tensors_reads_initializers_and_constant_nodes():
    nodes = [helper.make_node("Constant", [], ["c1"], value_float=2.5),
             helper.make_node("Constant", [], ["c2"], value=_const("t", np.arange(3, dtype=np.int32))),
             helper.make_node("Add", ["x", "c1"], ["y"])]
    model = _model(nodes, [_value("x", TensorProto.FLOAT, [3])], [_value("y", TensorProto.FLOAT, [3])],
                   [_const("w", np.ones((2, 2), np.float32))])
    values = constant_tensors(model)
    assert set(values) == {"w", "c1", "c2"}
    np.testing.assert_array_equal(values["w"], np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(values["c1"], np.float32(2.5))
    np.testing.assert_array_equal(values["c2"], np.arange(3, dtype=np.int32))


def test_accepts_a_path(tmp_path):
    model = _single(helper.make_node("NonZero", ["x"], ["nz"], name="planted"), [_value("x", TensorProto.FLOAT, [4])],
                    [_value("nz", TensorProto.INT64, [1, None])])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert _ops_reported(check_tensorrt_compatibility(path)) == [("planted", "NonZero")]
    assert len(find_forbidden_ops(str(path))) == 1


def test_missing_and_corrupt_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        check_tensorrt_compatibility(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00\xffnot a model at all\x13\x37")
    with pytest.raises(ValueError, match="corrupt.onnx"):
        check_tensorrt_compatibility(corrupt)
    with pytest.raises(TypeError):
        check_tensorrt_compatibility(42)


def test_forbidden_ops_cover_sequences_and_control_flow():
    expected = {"NonZero", "Loop", "If", "Scan", "Unique", "SequenceConstruct", "SequenceAt", "SplitToSequence"}
    assert expected <= FORBIDDEN_OPS
    assert not FORBIDDEN_OPS & {"TopK", "Where", "ScatterElements"}
    assert trt_compat.TOPK_MAX_K == 3840
