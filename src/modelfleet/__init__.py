"""modelfleet: from a trained model to a fast, safe, monitored service on Kubernetes."""

from __future__ import annotations

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
from modelfleet.sdk import freeze, get, promote, quantize, register, register_file
from modelfleet.signature import Signature, TensorSpec

__version__ = "0.1.0"

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
    "freeze",
    "get",
    "load_settings",
    "parse_ref",
    "promote",
    "quantize",
    "register",
    "register_file",
]
