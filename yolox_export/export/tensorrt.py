"""Build and run TensorRT 10/11 engines from the exported ONNX graph, with the TensorRT Python API.

``tensorrt`` is imported inside the functions that need it, so this module imports everywhere; without TensorRT or
without a CUDA device, :func:`build_engine` and :class:`TensorRTRunner` raise :class:`TensorRTUnavailable`, whose
message is :func:`tensorrt_unavailable_reason`. Argument checks that need neither (file exists, profile shapes
consistent) run first, so they report the same on every machine.

Networks are created strongly typed (TensorRT 11 knows no other kind; ``EXPLICIT_BATCH`` is gone), so the engine
keeps the ONNX graph's dtypes: INT64 and BOOL inputs and outputs stay INT64 and BOOL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import check_output, write_atomically
from .contract import check_target_axis

__all__ = [
    "EngineBuildError",
    "TensorRTRunner",
    "TensorRTUnavailable",
    "build_engine",
    "check_profiles",
    "tensorrt_unavailable_reason",
    "torch_dtype",
]

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]

_TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
    "FP8": torch.float8_e4m3fn,
}

_INSTALL_HINT = "pip install yolox-export[gpu]"


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot be used here; the message says why in one line."""


class EngineBuildError(RuntimeError):
    """TensorRT's parser or builder rejected the model; the message carries the parser's errors."""


def tensorrt_unavailable_reason() -> str | None:
    """Return None when ``tensorrt`` imports and a CUDA device exists, else one line saying which is missing."""
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as err:
        return f"TensorRT is not installed ({err}); install it with `{_INSTALL_HINT}`"
    if not torch.cuda.is_available():
        return "no CUDA device is available (torch.cuda.is_available() is False); TensorRT needs one"
    return None


def _require_tensorrt() -> Any:
    """Return the ``tensorrt`` module, or raise :class:`TensorRTUnavailable`."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise TensorRTUnavailable(reason)
    import tensorrt

    return tensorrt


def torch_dtype(trt_dtype: Any) -> torch.dtype:
    """Return the torch dtype for a ``tensorrt.DataType`` member (matched by its name, e.g. ``FLOAT``, ``INT64``).

    Raises:
        TypeError: torch has no dtype for it (e.g. INT4, FP4).
    """
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in _TORCH_DTYPES:
        raise TypeError(f"TensorRT dtype {name} has no torch equivalent; supported: {sorted(_TORCH_DTYPES)}")
    return _TORCH_DTYPES[name]


def _as_shape(value: Sequence[int], what: str) -> Shape:
    shape = tuple(value)
    if not all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape):
        raise ValueError(f"{what}: expected non-negative integer dimensions, got {shape}")
    return shape


def check_profiles(profiles: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, Profile]:
    """Return ``profiles`` as ``{input name: (min, opt, max)}`` tuples after checking them.

    Each entry needs three shapes of one rank with ``min <= opt <= max`` on every axis.

    Raises:
        ValueError: naming the input and what is wrong.
    """
    checked: dict[str, Profile] = {}
    for name, shapes in profiles.items():
        if len(shapes) != 3:
            raise ValueError(f"profile for input {name!r}: expected (min, opt, max) shapes, got {len(shapes)} shapes")
        low, opt, high = (_as_shape(shape, f"profile for input {name!r}") for shape in shapes)
        if not len(low) == len(opt) == len(high):
            raise ValueError(f"profile for input {name!r}: min, opt and max have different ranks: {low}, {opt}, "
                             f"{high}")
        if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
            raise ValueError(f"profile for input {name!r}: need min <= opt <= max on every axis, got min={low}, "
                             f"opt={opt}, max={high}")
        checked[name] = (low, opt, high)
    return checked


def _network_flags(trt: Any) -> int:
    """Return ``create_network`` flags for a strongly typed network, or 0 where the flag does not exist."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        details = "\n  ".join(errors) or "no error reported"
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n  {details}")


def _network_inputs(network: Any) -> dict[str, Shape]:
    inputs = (network.get_input(index) for index in range(network.num_inputs))
    return {tensor.name: tuple(tensor.shape) for tensor in inputs}


def _profile_for(inputs: Mapping[str, Shape], profiles: Mapping[str, Profile]) -> dict[str, Profile]:
    """Return the profile entries to set, after checking them against the network's inputs.

    Raises:
        ValueError: a profile names no input, a dynamic input has no profile, or a profile disagrees with an input's
            rank or static dimensions.
    """
    unknown = sorted(set(profiles) - set(inputs))
    if unknown:
        raise ValueError(f"profiles name inputs {unknown} that the network does not have; inputs: {sorted(inputs)}")
    for name, shape in inputs.items():
        if name not in profiles:
            if any(dim < 0 for dim in shape):
                raise ValueError(f"input {name!r} has dynamic shape {shape} but no (min, opt, max) profile")
            continue
        for bound in profiles[name]:
            if len(bound) != len(shape) or any(0 <= want != got for want, got in zip(shape, bound)):
                raise ValueError(f"profile for input {name!r}: shape {bound} does not fit the input's shape {shape} "
                                 "(-1 marks a dynamic axis)")
    return dict(profiles)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profiles: Mapping[str, Sequence[Sequence[int]]],
    workspace_bytes: int = 1 << 30,
) -> Path:
    """Build a TensorRT engine from ``onnx_path``, write it to ``engine_path`` and return that path.

    Args:
        onnx_path: the ONNX model.
        engine_path: where to write the serialized engine (parent folders are created).
        profiles: ``{input name: (min, opt, max)}`` shapes for one optimization profile; every input with a dynamic
            axis needs one.
        workspace_bytes: the builder's workspace memory pool limit.

    Raises:
        FileNotFoundError: ``onnx_path`` does not exist.
        files.OutputPathError: ``engine_path`` is not ours to write (``files.output_problem``), checked first.
        ValueError: inconsistent profiles, or profiles that do not fit the network's inputs.
        TensorRTUnavailable: no TensorRT or no CUDA device.
        EngineBuildError: the parser rejected the model, or the builder returned no engine.
    """
    onnx_path, engine_path = Path(onnx_path), check_output(engine_path, "engine")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    if workspace_bytes <= 0:
        raise ValueError(f"workspace_bytes must be positive, got {workspace_bytes}")
    checked = check_profiles(profiles)
    trt = _require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    _parse_onnx(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    entries = _profile_for(_network_inputs(network), checked)
    if entries:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in entries.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path}; see TensorRT's log above")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(engine_path, bytes(serialized))
    return engine_path


class TensorRTRunner:
    """Run a serialized TensorRT engine on torch CUDA tensors.

    Args:
        engine_path: a file written by :func:`build_engine` (with the same TensorRT version).

    Raises:
        FileNotFoundError: ``engine_path`` does not exist.
        TensorRTUnavailable: no TensorRT or no CUDA device.
        ValueError: TensorRT cannot deserialize the file.
    """

    def __init__(self, engine_path: str | Path) -> None:
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {self.engine_path}")
        trt = _require_tensorrt()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise ValueError(f"TensorRT cannot deserialize {self.engine_path} (corrupt, or built by another "
                             "TensorRT version or for another GPU)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(index) for index in range(self._engine.num_io_tensors)]
        is_input = {name: self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self._input_names = tuple(name for name in names if is_input[name])
        self._output_names = tuple(name for name in names if not is_input[name])

    @property
    def input_names(self) -> tuple[str, ...]:
        """The engine's input tensor names."""
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """The engine's output tensor names."""
        return self._output_names

    def _dtype(self, name: str) -> torch.dtype:
        return torch_dtype(self._engine.get_tensor_dtype(name))

    def _check_feeds(self, feeds: Mapping[str, torch.Tensor]) -> None:
        missing = [name for name in self._input_names if name not in feeds]
        unexpected = sorted(name for name in feeds if name not in self._input_names)
        if missing or unexpected:
            raise ValueError(f"engine inputs are {list(self._input_names)}: missing {missing}, unexpected "
                             f"{unexpected}")
        for name in self._input_names:
            tensor = feeds[name]
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"input {name!r}: expected a torch.Tensor, got {type(tensor).__name__}")
            if tensor.dtype != self._dtype(name):
                raise TypeError(f"input {name!r}: expected dtype {self._dtype(name)}, got {tensor.dtype}")
            shape = tuple(self._engine.get_tensor_shape(name))
            if tensor.dim() != len(shape) or any(0 <= want != got for want, got in zip(shape, tensor.shape)):
                raise ValueError(f"input {name!r}: expected shape {shape} (-1 marks a dynamic axis), got "
                                 f"{tuple(tensor.shape)}")
        check_target_axis(feeds)

    def run(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``{output name: CUDA tensor}`` for one run on ``feeds``.

        Inputs are moved to the current CUDA device (and made contiguous) if they are not already there. The run is
        enqueued on torch's current CUDA stream, which is synchronized before returning.

        Raises:
            ValueError: missing or unexpected inputs, a wrong rank or static dimension, or a shape outside the
                engine's optimization profile.
            TypeError: an input that is not a tensor, or has the wrong dtype.
            RuntimeError: TensorRT could not run the engine.
        """
        self._check_feeds(feeds)
        device = torch.device("cuda", torch.cuda.current_device())
        inputs = {name: feeds[name].to(device).contiguous() for name in self._input_names}
        for name, tensor in inputs.items():
            if not self._context.set_input_shape(name, tuple(tensor.shape)):
                raise ValueError(f"input {name!r}: shape {tuple(tensor.shape)} is outside the engine's "
                                 "optimization profile")
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self._output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise RuntimeError(f"output {name!r} has data-dependent shape {shape}; the graph must be static")
            outputs[name] = torch.empty(shape, dtype=self._dtype(name), device=device)
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(device)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {self.engine_path}; see TensorRT's log")
        stream.synchronize()
        return outputs
