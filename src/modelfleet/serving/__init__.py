"""The model server: V2 and KServe v1 over ONNX Runtime, small jobs first, batched and cached.

Nothing here imports scikit-learn, torch, the Kubernetes client or training code: a serving
image installs only ``modelfleet[serve]``.
"""

from __future__ import annotations

from modelfleet.serving.app import ServingApp, create_app
from modelfleet.serving.core import InferenceCore
from modelfleet.serving.runner import OnnxRunner, Runner
from modelfleet.serving.server import build_app, run_server
from modelfleet.serving.settings import ModelConfig, ServeConfig, load_serve_config

__all__ = [
    "InferenceCore",
    "ModelConfig",
    "OnnxRunner",
    "Runner",
    "ServeConfig",
    "ServingApp",
    "build_app",
    "create_app",
    "load_serve_config",
    "run_server",
]
