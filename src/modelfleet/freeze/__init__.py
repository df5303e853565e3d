"""Freeze source models to verified ONNX graphs, and quantize those graphs to fp16 / int8."""

from __future__ import annotations

from modelfleet.freeze.adapter import Adapter, SourceBlob, adapter_for_framework, find_adapter
from modelfleet.freeze.files import LoadedModel, load_model_file
from modelfleet.freeze.freezer import FrozenGraph, freeze_model
from modelfleet.freeze.quantize import Method, Quantized, quantize_graph

__all__ = [
    "Adapter",
    "FrozenGraph",
    "LoadedModel",
    "Method",
    "Quantized",
    "SourceBlob",
    "adapter_for_framework",
    "find_adapter",
    "freeze_model",
    "load_model_file",
    "quantize_graph",
]
