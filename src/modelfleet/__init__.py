"""modelfleet: from a trained model to a fast, safe, monitored service on Kubernetes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names resolve lazily, so importing a light part of the package (the server in a
# container, which has no registry or training stack installed) loads only what it uses.
_LAZY = {
    "Settings": "modelfleet.config",
    "load_settings": "modelfleet.config",
    "ModelRef": "modelfleet.refs",
    "Stage": "modelfleet.refs",
    "parse_ref": "modelfleet.refs",
    "ModelVersion": "modelfleet.registry",
    "Registry": "modelfleet.registry",
    "StageEvent": "modelfleet.registry",
    "Task": "modelfleet.registry",
    "Variant": "modelfleet.registry",
    # not "freeze": that name is the modelfleet.freeze subpackage
    "freeze_version": "modelfleet.sdk",
    "get": "modelfleet.sdk",
    "promote": "modelfleet.sdk",
    "quantize": "modelfleet.sdk",
    "register": "modelfleet.sdk",
    "register_file": "modelfleet.sdk",
    "Signature": "modelfleet.signature",
    "TensorSpec": "modelfleet.signature",
}
_ERRORS = (
    "AccuracyDropError",
    "ArtifactCorruptedError",
    "ArtifactNotFoundError",
    "ConfigError",
    "FreezeError",
    "InvalidReferenceError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelfleetError",
    "PromotionRefusedError",
    "QuantizeError",
    "RegistryError",
    "SchemaVersionError",
    "SignatureError",
    "UnsupportedModelError",
    "UntrustedArtifactError",
    "VerificationError",
)
_LAZY.update(dict.fromkeys(_ERRORS, "modelfleet.errors"))

if TYPE_CHECKING:
    from modelfleet.config import Settings, load_settings
    from modelfleet.errors import (
        AccuracyDropError,
        ArtifactCorruptedError,
        ArtifactNotFoundError,
        ConfigError,
        FreezeError,
        InvalidReferenceError,
        MissingDependencyError,
        ModelfleetError,
        ModelNotFoundError,
        PromotionRefusedError,
        QuantizeError,
        RegistryError,
        SchemaVersionError,
        SignatureError,
        UnsupportedModelError,
        UntrustedArtifactError,
        VerificationError,
    )
    from modelfleet.refs import ModelRef, Stage, parse_ref
    from modelfleet.registry import ModelVersion, Registry, StageEvent, Task, Variant
    from modelfleet.sdk import freeze_version, get, promote, quantize, register, register_file
    from modelfleet.signature import Signature, TensorSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelfleet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AccuracyDropError",
    "ArtifactCorruptedError",
    "ArtifactNotFoundError",
    "ConfigError",
    "FreezeError",
    "InvalidReferenceError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelRef",
    "ModelVersion",
    "ModelfleetError",
    "PromotionRefusedError",
    "QuantizeError",
    "Registry",
    "RegistryError",
    "SchemaVersionError",
    "Settings",
    "Signature",
    "SignatureError",
    "Stage",
    "StageEvent",
    "Task",
    "TensorSpec",
    "UnsupportedModelError",
    "UntrustedArtifactError",
    "Variant",
    "VerificationError",
    "__version__",
    "freeze_version",
    "get",
    "load_settings",
    "parse_ref",
    "promote",
    "quantize",
    "register",
    "register_file",
]
