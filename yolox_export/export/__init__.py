"""Export the static YOLOX assignment and loss graph to ONNX, check it for TensorRT, and run it.

Submodules: ``trt_compat`` (TensorRT-compatibility checks on ONNX graphs), ``ort_runtime`` (onnxruntime runner with
input validation), ``tensorrt`` (TensorRT engine builder and runner, optional) and ``presets`` (export presets read
from ``models/*.toml``). onnxruntime and TensorRT are imported only when used.
"""
