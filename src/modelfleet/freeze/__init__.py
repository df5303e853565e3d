"""Freeze source models to verified ONNX graphs, and quantize those graphs to fp16 / int8."""

from __future__ import annotations

from modelfleet.freeze.adapter import Adapter, SourceBlob, adapter_for_framework, find_adapter
from modelfleet.freeze.files import LoadedModel, load_model_file
from modelfleet.freeze.freezer import FrozenGraph, freeze_model
from modelfleet.freeze.onnx_adapter import ONNX_MEDIA_TYPE, graph_signature, onnx_module
from modelfleet.freeze.quantize import Method, Quantized, quantize_graph

__all__ = [
    "ONNX_MEDIA_TYPE",
    "Adapter",
    "FrozenGraph",
    "LoadedModel",
    "Method",
    "Quantized",
    "SourceBlob",
    "adapter_for_framework",
    "find_adapter",
    "freeze_model",
    "graph_signature",
    "load_model_file",
    "onnx_module",
    "quantize_graph",
]
