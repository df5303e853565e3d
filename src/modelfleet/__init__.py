"""modelfleet: from a trained model to a fast, safe, monitored service on Kubernetes."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The imports below are the one list of public names. Type checkers read them as written;
# at run time they are not executed, and each name is imported from its module on first
# use instead, so that a light part of the package (the server in a container, which has no
# registry or training stack installed) loads only what it uses. `X as X` marks a re-export.
if TYPE_CHECKING:
    from modelfleet.config import Settings as Settings
    from modelfleet.config import load_settings as load_settings
    from modelfleet.errors import AccuracyDropError as AccuracyDropError
    from modelfleet.errors import ArtifactCorruptedError as ArtifactCorruptedError
    from modelfleet.errors import ArtifactNotFoundError as ArtifactNotFoundError
    from modelfleet.errors import ConfigError as ConfigError
    from modelfleet.errors import FreezeError as FreezeError
    from modelfleet.errors import InvalidReferenceError as InvalidReferenceError
    from modelfleet.errors import MissingDependencyError as MissingDependencyError
    from modelfleet.errors import ModelfleetError as ModelfleetError
    from modelfleet.errors import ModelNotFoundError as ModelNotFoundError
    from modelfleet.errors import PromotionRefusedError as PromotionRefusedError
    from modelfleet.errors import QuantizeError as QuantizeError
    from modelfleet.errors import RegistryError as RegistryError
    from modelfleet.errors import SchemaVersionError as SchemaVersionError
    from modelfleet.errors import SignatureError as SignatureError
    from modelfleet.errors import UnsupportedModelError as UnsupportedModelError
    from modelfleet.errors import UntrustedArtifactError as UntrustedArtifactError
    from modelfleet.errors import VerificationError as VerificationError
    from modelfleet.refs import ModelRef as ModelRef
    from modelfleet.refs import Stage as Stage
    from modelfleet.refs import parse_ref as parse_ref
    from modelfleet.registry import ModelVersion as ModelVersion
    from modelfleet.registry import Registry as Registry
    from modelfleet.registry import StageEvent as StageEvent
    from modelfleet.registry import Task as Task
    from modelfleet.registry import Variant as Variant

    # not "freeze": that name is the modelfleet.freeze subpackage
    from modelfleet.sdk import freeze_version as freeze_version
    from modelfleet.sdk import get as get
    from modelfleet.sdk import promote as promote
    from modelfleet.sdk import quantize as quantize
    from modelfleet.sdk import register as register
    from modelfleet.sdk import register_file as register_file
    from modelfleet.signature import Signature as Signature
    from modelfleet.signature import TensorSpec as TensorSpec


def _public_names() -> dict[str, str]:
    """``{name: module}`` read from the ``if TYPE_CHECKING:`` block of this file."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


_LAZY = _public_names()
__all__ = sorted([*_LAZY, "__version__"], key=str.casefold)  # noqa: PLE0605


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelfleet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
