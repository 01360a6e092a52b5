"""TensorRT-compatibility checks for ONNX graphs, without TensorRT.

:func:`check_tensorrt_compatibility` walks every node of a model (subgraphs and model-local functions included) and
reports what TensorRT's ONNX parser would refuse, or what this project rules out because it makes shapes
data-dependent. It needs only ``onnx`` and ``numpy``, so it runs on machines with no GPU and no TensorRT.

The supported-operator table (:data:`SUPPORTED_OPS`) and the per-operator limits come from onnx-tensorrt's
``docs/operators.md``, the revision for TensorRT 10.15 (header: "TensorRT 10.15 supports operators in the inclusive
range of opset 9 to opset 24"), in the onnx/onnx-tensorrt repository. Operators marked "Y" there are in the table;
operators marked "N" or not listed are not. The limits checked here:

- TopK: ``K`` a build-time constant below 3840, ``sorted=1``;
- Reduce*: ``axes`` an initializer;
- CumSum: floating-point input, ``axis`` a build-time constant;
- Equal, Less, Greater, LessOrEqual, GreaterOrEqual: no BOOL inputs;
- ScatterElements, ScatterND: no ``reduction`` other than ``"none"``;
- OneHot: ``depth`` a build-time constant;
- Dropout: ``is_training`` an initializer that is False;
- Constant: no ``sparse_value``, ``value_string`` or ``value_strings``;
- the default-domain opset between 9 and 24, and graph inputs and outputs of a type TensorRT has.

The per-target audit outputs (``target_k``, ``target_cells``: ``contract.AUDIT_OUTPUT_NAMES``) stay within these
limits by construction: a count per target would naturally be a ScatterElements with reduction "add" over the
matched cells, which the parser refuses, so the graph counts instead with one Equal of ``matched_gt`` (int64, not
BOOL) against a Range over the targets and one float32 ReduceSum over [B, G, X] (X: the cells, or the windowed
form's union slots), and takes k from the contest's own dynamic k; the check below sees those nodes like any other.

"Constant" means a graph initializer or the output of a ``Constant`` node; the parser also folds some shape
arithmetic, which this check does not attempt, so it can report a constant-looking value that TensorRT would accept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

__all__ = [
    "FORBIDDEN_OPS",
    "PARSER_OPSET_RANGE",
    "PARSER_TABLE_VERSION",
    "SUPPORTED_OPS",
    "TOPK_MAX_K",
    "Problem",
    "check_tensorrt_compatibility",
    "constant_tensors",
    "find_forbidden_ops",
    "load_model",
    "value_types",
]

PARSER_TABLE_VERSION = "TensorRT 10.15 (onnx-tensorrt docs/operators.md)"
"""Which revision of onnx-tensorrt's operator table :data:`SUPPORTED_OPS` encodes."""

PARSER_OPSET_RANGE = (9, 24)
"""Inclusive range of default-domain opsets the parser of :data:`PARSER_TABLE_VERSION` accepts."""

TOPK_MAX_K = 3840
"""TensorRT's TopK needs ``K < TOPK_MAX_K``."""

SUPPORTED_OPS = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "Attention",
        "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
        "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv",
        "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
        "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool",
        "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU",
        "HammingWindow", "HannWindow", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
        "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
        "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
        "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not",
        "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal",
        "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
        "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RMSNormalization", "RNN", "RoiAlign",
        "RotaryEmbedding", "Round", "STFT", "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
        "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign",
        "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "TensorScatter", "ThresholdedRelu",
        "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
    }
)
"""Default-domain operators marked supported in onnx-tensorrt's table for :data:`PARSER_TABLE_VERSION`."""

_SEQUENCE_OPS = frozenset(
    {
        "ConcatFromSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
        "SequenceLength", "SequenceMap", "SplitToSequence",
    }
)

FORBIDDEN_OPS = frozenset({"NonZero", "Loop", "If", "Scan", "Unique"} | _SEQUENCE_OPS)
"""Operators this project's static graph must never contain, whether or not the parser accepts them."""

_FORBIDDEN_REASONS = {
    "NonZero": "its output shape depends on the data",
    "Unique": "its output shape depends on the data",
    "Loop": "control flow: the static graph must be straight-line",
    "If": "control flow: the static graph must be straight-line",
    "Scan": "control flow: the static graph must be straight-line",
}

_UNSUPPORTED_HINTS = {
    "NegativeLogLikelihoodLoss": "; write the loss with Log/Mul/ReduceSum instead",
    "SoftmaxCrossEntropyLoss": "; write the loss with LogSoftmax/Mul/ReduceSum instead",
}

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})

_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                          onnx.TensorProto.DOUBLE})

_IO_TYPES = frozenset(
    getattr(onnx.TensorProto, name)
    for name in ("FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE", "INT32", "INT64", "INT8", "UINT8", "BOOL",
                 "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1")
    if hasattr(onnx.TensorProto, name)
)

_COMPARISONS = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"})


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason TensorRT would reject a graph (or this project forbids it).

    Attributes:
        node: the node's name, qualified by the names of the nodes whose subgraphs hold it (``outer/body/inner``);
            for model-level problems, the tensor or domain concerned.
        op_type: the node's operator, or ``"graph input"``, ``"graph output"``, ``"opset"``.
        message: what is wrong and, where cheap to say, what to do instead.
    """

    node: str
    op_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.op_type} {self.node!r}: {self.message}"


@dataclasses.dataclass(frozen=True)
class _Site:
    """A node together with its qualified name."""

    name: str
    node: onnx.NodeProto


def load_model(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    """Return ``model`` itself, or the model stored at that path.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a readable ONNX model.
        TypeError: ``model`` is neither a ModelProto nor a path.
    """
    if isinstance(model, onnx.ModelProto):
        return model
    if not isinstance(model, (str, Path)):
        raise TypeError(f"expected an onnx.ModelProto or a path, got {type(model).__name__}")
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        loaded = onnx.load(str(path))
    except (DecodeError, ValueError) as err:
        raise ValueError(f"cannot read ONNX model {path}: {err}") from err
    if not loaded.ir_version or not loaded.HasField("graph"):
        raise ValueError(f"cannot read ONNX model {path}: the file holds no ONNX model (no IR version or graph)")
    return loaded


def _subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """Yield ``(attribute name, graph)`` for every graph attribute of ``node``."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for index, graph in enumerate(attr.graphs):
                yield f"{attr.name}[{index}]", graph


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"<unnamed {node.op_type} #{index}>"


def _local_functions(model: onnx.ModelProto) -> dict[tuple[str, str], onnx.FunctionProto]:
    return {(function.domain, function.name): function for function in model.functions}


def _walk_nodes(
    nodes: Iterable[onnx.NodeProto],
    functions: Mapping[tuple[str, str], onnx.FunctionProto],
    scope: str = "",
    calling: frozenset[tuple[str, str]] = frozenset(),
) -> Iterator[_Site]:
    """Yield every node under ``nodes``: subgraph nodes and the bodies of called model-local functions included.

    A node that calls a model-local function is not yielded itself (the parser inlines the function); its body is.
    """
    for index, node in enumerate(nodes):
        name = scope + _node_name(node, index)
        key = (node.domain, node.op_type)
        if key in functions and key not in calling:
            yield from _walk_nodes(functions[key].node, functions, f"{name}/", calling | {key})
            continue
        yield _Site(name, node)
        for attr_name, graph in _subgraphs(node):
            yield from _walk_nodes(graph.node, functions, f"{name}/{attr_name}/", calling)


def _all_sites(model: onnx.ModelProto) -> Iterator[_Site]:
    return _walk_nodes(model.graph.node, _local_functions(model))


def _all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Yield ``graph`` and every graph nested in its nodes."""
    yield graph
    for node in graph.node:
        for _, subgraph in _subgraphs(node):
            yield from _all_graphs(subgraph)


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """Return the value a ``Constant`` node holds, or None for forms with no numpy value (sparse, strings)."""
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.asarray(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.asarray(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.asarray(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.asarray(list(attr.ints), dtype=np.int64)
    return None


def constant_tensors(model: onnx.ModelProto | str | Path) -> dict[str, np.ndarray]:
    """Return ``{tensor name: value}`` for every initializer and ``Constant`` node output in ``model``.

    Subgraph initializers and the bodies of model-local functions are included. Initializers whose data lives in an
    external file that was not loaded are left out.
    """
    model = load_model(model)
    values: dict[str, np.ndarray] = {}
    for graph in _all_graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                continue
            values[tensor.name] = numpy_helper.to_array(tensor)
    for site in _all_sites(model):
        if site.node.op_type == "Constant" and site.node.domain in _DEFAULT_DOMAINS and site.node.output:
            value = _constant_node_value(site.node)
            if value is not None:
                values[site.node.output[0]] = value
    return values


def _infer_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with inferred value_info, or ``model`` itself when inference fails."""
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        return model


def value_types(model: onnx.ModelProto | str | Path) -> dict[str, int]:
    """Return ``{tensor name: onnx.TensorProto element type}`` for every tensor whose type is known.

    Types come from ONNX shape inference (best effort: a graph it cannot process keeps its declared value_info),
    graph inputs and outputs, initializers and ``Constant`` nodes.
    """
    model = _infer_types(load_model(model))
    types: dict[str, int] = {}
    for graph in _all_graphs(model.graph):
        for info in (*graph.input, *graph.output, *graph.value_info):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                types[info.name] = info.type.tensor_type.elem_type
        for tensor in graph.initializer:
            types[tensor.name] = tensor.data_type
    for site in _all_sites(model):
        if site.node.op_type == "Constant" and site.node.output:
            value = _constant_node_value(site.node)
            if value is not None:
                types.setdefault(site.node.output[0], onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
    return types


@dataclasses.dataclass(frozen=True)
class _Facts:
    """What the per-operator checks know about the graph's tensors."""

    constants: Mapping[str, np.ndarray]
    types: Mapping[str, int]


def _attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _input(node: onnx.NodeProto, index: int) -> str:
    """Return the name of input ``index``, or "" when it is absent or omitted."""
    return node.input[index] if index < len(node.input) else ""


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


def _check_topk(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    if _attribute(node, "sorted", 1) == 0:
        yield "sorted=0; TensorRT's TopK requires sorted=1"
    k_name = _input(node, 1)
    if k_name:
        if k_name not in facts.constants:
            yield f"K ({k_name!r}) is not a constant; TensorRT needs K as an initializer or Constant"
            return
        k = int(np.asarray(facts.constants[k_name]).reshape(-1)[0])
    else:
        k = int(_attribute(node, "k", 0))
    if k >= TOPK_MAX_K:
        yield f"K={k}; TensorRT's TopK needs K < {TOPK_MAX_K}"


def _check_reduce(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    axes = _input(node, 1)
    if axes and axes not in facts.constants:
        yield f"axes ({axes!r}) is not a constant; TensorRT needs the axes as an initializer"


def _check_cumsum(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    data_type = facts.types.get(_input(node, 0))
    if data_type is not None and data_type not in _FLOAT_TYPES:
        yield f"input is {_type_name(data_type)}; TensorRT's CumSum takes floating-point input only"
    axis = _input(node, 1)
    if axis and axis not in facts.constants:
        yield f"axis ({axis!r}) is not a constant; TensorRT needs a build-time axis"


def _check_comparison(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    if any(facts.types.get(name) == onnx.TensorProto.BOOL for name in node.input if name):
        yield f"BOOL inputs; TensorRT's {node.op_type} takes floating-point or integer inputs (use Xor/Not on bools)"


def _check_scatter(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    reduction = _attribute(node, "reduction", b"none")
    if isinstance(reduction, bytes):
        reduction = reduction.decode()
    if reduction != "none":
        yield f"reduction={reduction!r}; TensorRT supports only reduction='none'"


def _check_onehot(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    depth = _input(node, 1)
    if depth not in facts.constants:
        yield f"depth ({depth!r}) is not a constant; TensorRT needs a build-time depth (compare with a Range instead)"


def _check_dropout(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    training = _input(node, 2)
    if not training:
        return
    if training not in facts.constants:
        yield f"is_training ({training!r}) is not a constant; TensorRT needs an initializer equal to False"
    elif bool(np.asarray(facts.constants[training]).reshape(-1)[0]):
        yield "is_training is True; TensorRT supports inference-mode Dropout only"


def _check_constant(node: onnx.NodeProto, facts: _Facts) -> Iterator[str]:
    for attr in node.attribute:
        if attr.name in ("sparse_value", "value_string", "value_strings"):
            yield f"attribute {attr.name!r} is not supported by TensorRT"


_REDUCE_OPS = frozenset(op for op in SUPPORTED_OPS if op.startswith("Reduce"))

_CHECKS: dict[str, Callable[[onnx.NodeProto, _Facts], Iterator[str]]] = {
    "TopK": _check_topk,
    "CumSum": _check_cumsum,
    "ScatterElements": _check_scatter,
    "ScatterND": _check_scatter,
    "OneHot": _check_onehot,
    "Dropout": _check_dropout,
    "Constant": _check_constant,
    **{op: _check_reduce for op in _REDUCE_OPS},
    **{op: _check_comparison for op in _COMPARISONS},
}


def _operator_problems(site: _Site) -> list[Problem]:
    """Return the problems with the operator itself: forbidden, unsupported, or from a foreign domain."""
    node = site.node
    if node.domain not in _DEFAULT_DOMAINS:
        return [Problem(site.name, node.op_type, f"operator from domain {node.domain!r}; TensorRT's parser imports "
                                                   "it only through a plugin registered under that name")]
    supported = node.op_type in SUPPORTED_OPS
    if node.op_type in FORBIDDEN_OPS:
        reason = _FORBIDDEN_REASONS.get(node.op_type, "sequence types do not exist in TensorRT")
        tail = "" if supported else f", and TensorRT's parser ({PARSER_TABLE_VERSION}) does not support it"
        return [Problem(site.name, node.op_type, f"forbidden in the static graph ({reason}){tail}")]
    if not supported:
        hint = _UNSUPPORTED_HINTS.get(node.op_type, "")
        return [Problem(site.name, node.op_type, f"not supported by TensorRT's ONNX parser ({PARSER_TABLE_VERSION})"
                                                 f"{hint}")]
    return []


def _node_problems(site: _Site, facts: _Facts) -> list[Problem]:
    problems = _operator_problems(site)
    check = _CHECKS.get(site.node.op_type) if site.node.domain in _DEFAULT_DOMAINS else None
    if check is not None:
        problems.extend(Problem(site.name, site.node.op_type, message) for message in check(site.node, facts))
    return problems


def _opset_problems(model: onnx.ModelProto) -> list[Problem]:
    low, high = PARSER_OPSET_RANGE
    return [
        Problem("ai.onnx", "opset", f"opset {entry.version} is outside the range {low}..{high} that TensorRT's "
                                    f"parser ({PARSER_TABLE_VERSION}) accepts")
        for entry in model.opset_import
        if entry.domain in _DEFAULT_DOMAINS and not low <= entry.version <= high
    ]


def _io_problems(model: onnx.ModelProto) -> list[Problem]:
    initializers = {tensor.name for tensor in model.graph.initializer}
    problems = []
    for kind, infos in (("graph input", model.graph.input), ("graph output", model.graph.output)):
        for info in infos:
            if info.name in initializers:
                continue
            if not info.type.HasField("tensor_type"):
                problems.append(Problem(info.name, kind, "not a tensor; TensorRT has tensor inputs and outputs only"))
                continue
            elem_type = info.type.tensor_type.elem_type
            if elem_type and elem_type not in _IO_TYPES:
                problems.append(Problem(info.name, kind, f"element type {_type_name(elem_type)} does not exist "
                                                         "in TensorRT"))
    return problems


def check_tensorrt_compatibility(model: onnx.ModelProto | str | Path) -> list[Problem]:
    """Return every reason TensorRT's ONNX parser, or this project's static-graph rules, would reject ``model``.

    An empty list means no known problem; it does not promise that a TensorRT build succeeds.

    Args:
        model: a loaded model, or the path of a ``.onnx`` file.

    Raises:
        FileNotFoundError, ValueError, TypeError: as :func:`load_model`.
    """
    model = load_model(model)
    facts = _Facts(constants=constant_tensors(model), types=value_types(model))
    problems = _opset_problems(model) + _io_problems(model)
    for site in _all_sites(model):
        problems.extend(_node_problems(site, facts))
    return problems


def find_forbidden_ops(model: onnx.ModelProto | str | Path) -> list[str]:
    """Return one line per node whose operator is in :data:`FORBIDDEN_OPS`, naming the node and the operator."""
    model = load_model(model)
    return [
        str(problem)
        for site in _all_sites(model)
        if site.node.op_type in FORBIDDEN_OPS and site.node.domain in _DEFAULT_DOMAINS
        for problem in _operator_problems(site)
    ]
