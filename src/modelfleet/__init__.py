"""modelfleet: from a trained model to a fast, safe, monitored service on Kubernetes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelfleet.lazy import attach as _attach

__version__ = "0.1.0"

# The one list of public names. Each is imported from its module on first use (see
# modelfleet.lazy), so the server in a container, which has no registry or training stack
# installed, loads only what it uses.
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

__getattr__, __dir__, _names = _attach(__name__, __file__)
__all__ = ["__version__", *_names]  # noqa: PLE0604
