"""Deployable model files: ONNX export checked against PyTorch with onnxruntime."""

from pruneguard.export.onnx import OPSET, OnnxCheck, check_onnx, checked_onnx, export_onnx, onnx_available, onnx_bytes

__all__ = ["OPSET", "OnnxCheck", "check_onnx", "checked_onnx", "export_onnx", "onnx_available", "onnx_bytes"]
