"""Run an exported ONNX model under onnxruntime, checking every feed against the model's declared inputs, and the
one place onnxruntime sessions are created (:func:`ort_session`, also used by the benchmark).

onnxruntime's own errors for a wrong feed are terse and come from deep inside the session; :class:`OrtRunner`
checks names, ranks, static dimensions, shared symbolic dimensions and dtypes first and names the input, what it
expected and what it got. On a CUDA session (CUDA or TensorRT execution provider first) CUDA tensor feeds are bound
in place through onnxruntime's IOBinding and the outputs are written into CUDA tensors: no copy through the host.
onnxruntime is imported when a runner is created, not when this module is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import check_flag
from .contract import check_target_axis

__all__ = ["DEFAULT_PROVIDERS", "InputSpec", "OrtRunner", "checked_arrays", "default_providers", "numpy_dtype",
           "ort_session"]

DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""Execution providers in order of preference; :func:`default_providers` keeps the available ones."""
#: Providers whose sessions take CUDA tensors in place (IOBinding) when they come first.
_DEVICE_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

_INSTALL_HINT = "onnxruntime is not installed; install it with `pip install yolox-export[cpu]`"


def numpy_dtype(ort_type: str) -> np.dtype | None:
    """Return the numpy dtype for an onnxruntime type string such as ``'tensor(float)'``, or None if numpy has none."""
    dtype = _ORT_TYPES.get(ort_type)
    return None if dtype is None else np.dtype(dtype)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """A model input as onnxruntime declares it.

    Attributes:
        name: the input's name.
        shape: one entry per axis: an int for a static dimension, a string (symbolic name) or None for a dynamic one.
        ort_type: onnxruntime's type string, e.g. ``'tensor(float)'``.
        dtype: the matching numpy dtype, or None when numpy has none (e.g. bfloat16): such inputs are not
            dtype-checked.
    """

    name: str
    shape: tuple[int | str | None, ...]
    ort_type: str
    dtype: np.dtype | None

    def describe_shape(self) -> str:
        """Return the shape as text, dynamic axes by name (``?`` when unnamed): ``[N, 4]``."""
        return "[" + ", ".join("?" if dim is None else str(dim) for dim in self.shape) + "]"


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return onnxruntime


def ort_session(path: str | Path, providers: Sequence[str | tuple[str, Mapping[str, Any]]],
                threads: int | None = None, spinning: bool | None = None, profile_prefix: str | None = None,
                log_severity: int = 3) -> Any:
    """An ``onnxruntime.InferenceSession`` over ``path``: ``threads`` intra-op threads (one inter-op thread when
    set), intra-op spin-waiting on or off (None: onnxruntime's default), node profiling into ``profile_prefix``,
    and this session's own log severity (3: errors only; onnxruntime's global logger is left alone)."""
    onnxruntime = _import_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = log_severity
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(str(path), options, providers=list(providers))


def default_providers(available: Sequence[str]) -> list[str]:
    """Return the providers of :data:`DEFAULT_PROVIDERS` that are in ``available``, in preference order."""
    return [provider for provider in DEFAULT_PROVIDERS if provider in available]


def _provider_name(provider: str | tuple[str, Mapping[str, Any]]) -> str:
    return provider if isinstance(provider, str) else provider[0]


def _load_errors(onnxruntime: Any) -> tuple[type[BaseException], ...]:
    """Return the exception types onnxruntime raises for a model it cannot load."""
    state = onnxruntime.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NotImplemented")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


def _as_numpy(name: str, value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return np.ascontiguousarray(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    raise TypeError(f"input {name!r}: expected a numpy.ndarray or torch.Tensor, got {type(value).__name__}")


def _check_names(specs: Sequence[InputSpec], feeds: Mapping[str, object]) -> None:
    expected = [spec.name for spec in specs]
    missing = [name for name in expected if name not in feeds]
    unexpected = sorted(name for name in feeds if name not in expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        raise ValueError(f"model inputs are {expected}: {', '.join(parts)}")


def _check_shape(spec: InputSpec, array: np.ndarray) -> None:
    if array.ndim != len(spec.shape):
        raise ValueError(f"input {spec.name!r}: expected rank {len(spec.shape)} (shape {spec.describe_shape()}), "
                         f"got rank {array.ndim} (shape {list(array.shape)})")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
        if isinstance(want, int) and want != got:
            raise ValueError(f"input {spec.name!r}: expected size {want} on axis {axis} (shape "
                             f"{spec.describe_shape()}), got shape {list(array.shape)}")


def _check_dtype(spec: InputSpec, array: np.ndarray) -> None:
    if spec.dtype is not None and array.dtype != spec.dtype:
        raise TypeError(f"input {spec.name!r}: expected dtype {spec.dtype} ({spec.ort_type}), got {array.dtype}")


def _check_symbolic_dims(specs: Sequence[InputSpec], arrays: Mapping[str, np.ndarray]) -> None:
    """Check that every named dynamic dimension has one size across all inputs that use it."""
    seen: dict[str, tuple[int, str]] = {}
    for spec in specs:
        for dim, size in zip(spec.shape, arrays[spec.name].shape):
            if not isinstance(dim, str):
                continue
            if dim in seen and seen[dim][0] != size:
                first_size, first_input = seen[dim]
                raise ValueError(f"dimension {dim!r} is {first_size} in input {first_input!r} but {size} in input "
                                 f"{spec.name!r}")
            seen.setdefault(dim, (size, spec.name))


def checked_arrays(specs: Sequence[InputSpec], feeds: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, np.ndarray]:
    """Return ``feeds`` as contiguous numpy arrays after checking them against ``specs``.

    Raises:
        ValueError: missing or unexpected names, a wrong rank or static dimension, or one named dynamic dimension
            with different sizes in different inputs.
        TypeError: a feed that is not an array or tensor, or has the wrong dtype.
    """
    _check_names(specs, feeds)
    arrays = {spec.name: _as_numpy(spec.name, feeds[spec.name]) for spec in specs}
    _check_arrays(specs, arrays)
    return arrays


def _check_arrays(specs: Sequence[InputSpec], arrays: Mapping[str, Any]) -> None:
    """Ranks, static dimensions, dtypes and shared symbolic dimensions of ``arrays`` (anything with ``ndim``,
    ``shape`` and a numpy ``dtype``) against ``specs``."""
    for spec in specs:
        _check_shape(spec, arrays[spec.name])
        _check_dtype(spec, arrays[spec.name])
    _check_symbolic_dims(specs, arrays)


@dataclasses.dataclass(frozen=True)
class _TensorMeta:
    """A device tensor's rank, shape and numpy dtype (its torch dtype where numpy has none), for the checks."""

    ndim: int
    shape: tuple[int, ...]
    dtype: Any


def _numpy_dtype_of(dtype: torch.dtype) -> np.dtype | None:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except (TypeError, RuntimeError):
        return None


def _torch_dtype_of(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


def _specs(args: Sequence[Any]) -> tuple[InputSpec, ...]:
    """onnxruntime's ``NodeArg`` descriptions of a model's inputs or outputs as specs."""
    return tuple(InputSpec(arg.name, tuple(arg.shape), arg.type, numpy_dtype(arg.type)) for arg in args)


def _resolved_shape(shape: Sequence[int | str | None], sizes: Mapping[str, int]) -> tuple[int, ...] | None:
    """``shape`` with its symbolic dimensions replaced by ``sizes``; None when one is unknown."""
    resolved = []
    for dim in shape:
        if isinstance(dim, str) and dim in sizes:
            dim = sizes[dim]
        if not isinstance(dim, int):
            return None
        resolved.append(dim)
    return tuple(resolved)


class OrtRunner:
    """An onnxruntime session over one ``.onnx`` file, with feed validation.

    Args:
        model_path: the ``.onnx`` file.
        providers: execution providers (names, or ``(name, options)`` pairs), in preference order. Default: those of
            :data:`DEFAULT_PROVIDERS` that this onnxruntime build offers.
        validate: check every feed in :meth:`run` against the model's inputs before running.
        session_options: keyword arguments of :func:`ort_session` (``threads``, ``spinning``, ``profile_prefix``,
            ``log_severity``), e.g. the benchmark's thread count.

    Raises:
        ImportError: onnxruntime is not installed.
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: onnxruntime cannot load the file, or a requested provider is not available.
    """

    def __init__(
        self,
        model_path: str | Path,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        validate: bool = True,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.validate = check_flag("validate", validate)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.model_path}")
        onnxruntime = _import_onnxruntime()
        available = onnxruntime.get_available_providers()
        if providers is None:
            providers = default_providers(available)
        unavailable = [_provider_name(p) for p in providers if _provider_name(p) not in available]
        if unavailable:
            raise ValueError(f"execution providers {unavailable} are not available; this onnxruntime offers "
                             f"{list(available)}")
        try:
            self._session = ort_session(self.model_path, providers, **dict(session_options or {}))
        except _load_errors(onnxruntime) as err:
            raise ValueError(f"onnxruntime cannot load {self.model_path}: {err}") from err
        self._input_specs = _specs(self._session.get_inputs())
        self._output_specs = _specs(self._session.get_outputs())  # for the outputs the CUDA path allocates
        self._output_names = tuple(spec.name for spec in self._output_specs)
        self._on_device = self._session.get_providers()[0] in _DEVICE_PROVIDERS

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        """The model's inputs, in declaration order."""
        return self._input_specs

    @property
    def output_names(self) -> tuple[str, ...]:
        """The model's output names, in declaration order."""
        return self._output_names

    @property
    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession`` (e.g. for ``end_profiling``)."""
        return self._session

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return list(self._session.get_providers())

    def run(self, feeds: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``{output name: tensor}`` for one run on ``feeds`` (the runner protocol of ``runners``).

        On a CUDA session with every feed a CUDA tensor, the feeds are bound in place and the outputs are CUDA
        tensors (:meth:`_run_on_device`). Otherwise torch tensors are copied to host numpy arrays and the outputs
        are CPU tensors. With ``validate`` set, the feeds are checked as in :func:`checked_arrays` first.
        """
        if self.validate:
            check_target_axis(feeds)
        if self._on_device and feeds and all(isinstance(v, torch.Tensor) and v.is_cuda for v in feeds.values()):
            return self._run_on_device(feeds)
        if self.validate:
            arrays = checked_arrays(self._input_specs, feeds)
        else:
            arrays = {name: _as_numpy(name, value) for name, value in feeds.items()}
        try:
            outputs = self._session.run(list(self._output_names), arrays)
        except Exception as error:  # noqa: BLE001 - onnxruntime's own failure, re-raised with the inputs named
            shapes = ", ".join(f"{name} {list(a.shape)} {a.dtype}" for name, a in arrays.items())
            raise RuntimeError(f"onnxruntime failed on inputs {shapes}: {str(error).strip()}") from error
        return {name: torch.from_numpy(np.asarray(value)) for name, value in zip(self._output_names, outputs)}

    def _run_on_device(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One run through onnxruntime's IOBinding: the CUDA feeds bound in place (no host copy), the outputs written
        into CUDA tensors allocated by torch on the feeds' device (an output whose shape the inputs' symbolic
        dimensions do not resolve is allocated by onnxruntime and copied to a CPU tensor)."""
        tensors = {name: value.contiguous() for name, value in feeds.items()}  # referenced until the run returns
        if self.validate:
            _check_names(self._input_specs, tensors)
            _check_arrays(self._input_specs, {name: _TensorMeta(t.dim(), tuple(t.shape), _numpy_dtype_of(t.dtype)
                                                                or t.dtype) for name, t in tensors.items()})
        device = next(iter(tensors.values())).device
        index = device.index if device.index is not None else torch.cuda.current_device()
        binding = self._session.io_binding()
        sizes: dict[str, int] = {}
        for spec in self._input_specs:
            tensor, dtype = tensors[spec.name], _numpy_dtype_of(tensors[spec.name].dtype)
            if dtype is None:
                raise TypeError(f"input {spec.name!r}: numpy has no dtype for {tensor.dtype}")
            binding.bind_input(spec.name, "cuda", index, dtype.type, tuple(tensor.shape), tensor.data_ptr())
            sizes.update((dim, size) for dim, size in zip(spec.shape, tensor.shape) if isinstance(dim, str))
        outputs: dict[str, torch.Tensor] = {}
        for spec in self._output_specs:
            shape = _resolved_shape(spec.shape, sizes)
            if shape is None or spec.dtype is None:
                binding.bind_output(spec.name, "cuda", index)
                continue
            outputs[spec.name] = torch.empty(shape, dtype=_torch_dtype_of(spec.dtype), device=device)
            binding.bind_output(spec.name, "cuda", index, spec.dtype.type, shape, outputs[spec.name].data_ptr())
        torch.cuda.current_stream(device).synchronize()  # the feeds were written on torch's stream
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        if len(outputs) < len(self._output_specs):
            for spec, value in zip(self._output_specs, binding.copy_outputs_to_cpu()):
                outputs.setdefault(spec.name, torch.from_numpy(np.asarray(value)))
        return {spec.name: outputs[spec.name] for spec in self._output_specs}

    def __repr__(self) -> str:
        return f"OrtRunner({str(self.model_path)!r}, providers={self.providers})"
