"""The framework adapter contract and how a model object finds its adapter."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import UnsupportedModelError
from modelfleet.registry import Task
from modelfleet.signature import Signature


@dataclass(frozen=True, slots=True)
class SourceBlob:
    """A source model serialized for the artifact store."""

    data: bytes
    media_type: str


class Adapter(Protocol):
    """Knows one framework: how to store, reload, run and freeze its models."""

    framework: str

    def accepts(self, model: object) -> bool:
        """True when ``model`` belongs to this framework."""
        ...

    def framework_version(self) -> str:
        """Installed version of the framework."""
        ...

    def task(self, model: Any) -> Task:
        """What the model predicts, when the framework can tell."""
        ...

    def input_signature(self, sample: Any) -> Signature:
        """The inputs the frozen graph will take, inferred from a sample."""
        ...

    def normalize(self, model: Any, sample: Any) -> Any:
        """The form of ``model`` that is stored and frozen (e.g. a traced program)."""
        ...

    def serialize(self, model: Any, sample: Any) -> SourceBlob:
        """The source model as bytes that can be loaded without arbitrary code execution."""
        ...

    def deserialize(self, blob: SourceBlob) -> Any:
        """Load a source model this adapter serialized before."""
        ...

    def to_onnx(self, model: Any, signature: Signature, settings: FreezeSettings) -> Any:
        """Convert to an ``onnx.ModelProto`` whose inputs follow ``signature``."""
        ...

    def predict(self, model: Any, sample: Any) -> list[np.ndarray[Any, Any]]:
        """Run the source model; outputs in the order of the ONNX graph's outputs."""
        ...


def _loaded(module: str) -> bool:
    # A model object can only belong to a framework that is already imported, so detection
    # never imports torch or scikit-learn just to say no.
    return module in sys.modules


def find_adapter(model: object) -> Adapter:
    """The adapter for ``model`` or :class:`UnsupportedModelError` naming its type."""
    candidates: list[Adapter] = []
    if _loaded("onnx"):
        from modelfleet.freeze.onnx_adapter import OnnxAdapter

        candidates.append(OnnxAdapter())
    if _loaded("sklearn"):
        from modelfleet.freeze.sklearn_adapter import SklearnAdapter

        candidates.append(SklearnAdapter())
    if _loaded("torch"):
        from modelfleet.freeze.torch_adapter import TorchAdapter

        candidates.append(TorchAdapter())
    for adapter in candidates:
        if adapter.accepts(model):
            return adapter
    raise UnsupportedModelError(f"{type(model).__module__}.{type(model).__qualname__}")


def adapter_for_framework(framework: str) -> Adapter:
    """The adapter that registered a version of ``framework``."""
    if framework == "sklearn":
        from modelfleet.freeze.sklearn_adapter import SklearnAdapter

        return SklearnAdapter()
    if framework == "torch":
        from modelfleet.freeze.torch_adapter import TorchAdapter

        return TorchAdapter()
    if framework == "onnx":
        from modelfleet.freeze.onnx_adapter import OnnxAdapter

        return OnnxAdapter()
    raise UnsupportedModelError(framework)
