"""Export the static YOLOX assignment and loss graph to ONNX, check it for TensorRT, and run it.

Submodules: ``contract`` (the graph's input/output names and feeds), ``onnx_export`` (export, metadata, checks),
``trt_compat`` (TensorRT-compatibility checks on ONNX graphs), ``runners`` (the ``run(feeds) -> dict[str, Tensor]``
protocol and the eager runner), ``ort_runtime`` (onnxruntime sessions and runner with input validation),
``tensorrt`` (TensorRT engine builder and runner, optional), ``presets`` (export presets, the shipped ones in
``yolox_export/models/``) and ``pipeline`` (export, validate, time, build). onnxruntime and TensorRT are imported
only when used.
"""
