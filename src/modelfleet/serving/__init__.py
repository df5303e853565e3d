"""The model server: V2 and KServe v1 over ONNX Runtime, small jobs first, batched and cached.

Nothing here imports scikit-learn, torch, the Kubernetes client or training code: a serving
image installs only ``modelfleet[serve]``. The names below are imported on first use (see
:mod:`modelfleet.lazy`), so the client can use the V2 codec and an image build the serve
config without loading the web stack or ONNX Runtime.

- the server: :func:`run_server` (one process or several workers), :func:`build_app`,
  :class:`ServingApp` (the routes) over :class:`InferenceCore` (transport-free);
- its configuration: :class:`ServeConfig` and its sections, :func:`load_serve_config`;
- the V2 codec a client needs: :func:`encode_request`, :func:`decode_response`;
- bearer tokens: :func:`new_token`, :func:`parse_tokens`;
- runners: the :class:`Runner` protocol and :class:`OnnxRunner`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelfleet.lazy import attach as _attach

if TYPE_CHECKING:
    from modelfleet.serving.app import ServingApp as ServingApp
    from modelfleet.serving.app import create_app as create_app
    from modelfleet.serving.auth import new_token as new_token
    from modelfleet.serving.auth import parse_tokens as parse_tokens
    from modelfleet.serving.core import InferenceCore as InferenceCore
    from modelfleet.serving.model import warmup_inputs as warmup_inputs
    from modelfleet.serving.protocol import HEADER_LENGTH as HEADER_LENGTH
    from modelfleet.serving.protocol import decode_response as decode_response
    from modelfleet.serving.protocol import encode_request as encode_request
    from modelfleet.serving.runner import OnnxRunner as OnnxRunner
    from modelfleet.serving.runner import Runner as Runner
    from modelfleet.serving.server import build_app as build_app
    from modelfleet.serving.server import run_server as run_server
    from modelfleet.serving.settings import ModelConfig as ModelConfig
    from modelfleet.serving.settings import MonitoringConfig as MonitoringConfig
    from modelfleet.serving.settings import ServeConfig as ServeConfig
    from modelfleet.serving.settings import ServerConfig as ServerConfig
    from modelfleet.serving.settings import WatchConfig as WatchConfig
    from modelfleet.serving.settings import load_serve_config as load_serve_config

__getattr__, __dir__, __all__ = _attach(__name__, __file__)
