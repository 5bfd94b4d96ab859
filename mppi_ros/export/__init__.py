"""Deployment without JAX: ONNX export of the whole controller step and an onnxruntime backend.

:mod:`mppi_ros.export.onnx_export` (needs JAX and jax2onnx) writes ``controller.onnx`` into a
bundle; :mod:`mppi_ros.export.onnx_runtime` (needs only NumPy and onnxruntime) runs it.
This package's ``__init__`` imports neither, so the runtime stays importable without JAX.
"""
