"""What a served model's reference points at, and reading its graph and profile to load it."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.config import Settings
from modelfleet.errors import ArtifactCorruptedError, ModelfleetError, RegistryError
from modelfleet.serving.model import ModelSource
from modelfleet.serving.settings import ModelConfig

# Latency keys the freeze records: ``batch_<n>_ms``, one per batch size it timed.
_BATCH_KEY = re.compile(r"batch_(\d+)_ms")


@dataclass(frozen=True)
class Target:
    """What a reference points at, known without reading the graph."""

    version: str
    stamp: str  # the registry's sha256 of the graph; for a file, its size and mtime
    record: Any = field(default=None, compare=False)  # the registry's version record


def is_file_ref(ref: str) -> bool:
    """True when ``ref`` names an ONNX file rather than a registered model."""
    return ref.endswith(".onnx") or "/" in ref


def ms_per_row(latency: Mapping[str, Any]) -> float | None:
    """Estimated milliseconds per row, from the largest batch the freeze timed.

    An open batch axis is timed at 1 and 64 rows, a graph fixed to ``n`` rows at ``n`` only;
    a larger batch spreads the per-call overhead and estimates a row's cost best.
    """
    timed = {
        int(match.group(1)): float(value)
        for key, value in latency.items()
        if (match := _BATCH_KEY.fullmatch(key)) and int(match.group(1)) > 0 and value
    }
    if not timed:
        return None
    rows = max(timed)
    return timed[rows] / rows


def _read_profile(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        profile: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelfleetError(
            f"cannot read the training profile {path}: {exc}",
            hint="point watch.profile at the profile JSON exported with the model",
        ) from exc
    return profile


class Resolver:
    """Locates references and reads graphs, through a registry opened on first use."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._registry: Any = None

    def _open_registry(self) -> Any:
        if self._registry is None:
            from modelfleet.registry import Registry

            if self.settings is None:
                raise RegistryError("no registry configured to resolve model references")
            self._registry = Registry.open(self.settings)
        return self._registry

    def locate(self, config: ModelConfig) -> Target:
        """What a model's reference points at now; reads no graph. Blocking."""
        ref = config.ref
        if is_file_ref(ref):
            path = Path(ref)
            if not path.is_file():
                raise ModelfleetError(f"model file {path} does not exist", hint="check the path")
            stat = path.stat()
            return Target(config.version or "1", f"{stat.st_size}:{stat.st_mtime_ns}")
        registry = self._open_registry()
        version = self._variant(registry, registry.get(ref), config.variant)
        graph = version.artifact("onnx")
        # No onnx artifact: reading it raises the registry's error, with its hint.
        return Target(str(version.version), graph.sha256 if graph else "", version)

    def resolve(self, name: str, config: ModelConfig, target: Target) -> ModelSource:
        """Read (sha256-verified) the graph ``target`` names, to serve as ``name``. Blocking."""
        if target.record is None:
            return self._resolve_file(name, config)
        registry = self._open_registry()
        version = target.record
        graph = registry.read_artifact(version, "onnx")  # verified against target.stamp
        latency = (version.verification or {}).get("latency") or {}
        profile = registry.reference_profile(version) if config.watch.enabled else None
        return ModelSource(
            name=name,
            version=target.version,
            variant=version.variant.value,
            sha256=target.stamp,
            graph=graph,
            origin=f"registry {version.ref}",
            metrics=dict(version.metrics),
            stages=version.stages,
            ms_per_row=ms_per_row(latency),
            profile=json.loads(profile) if profile else None,
        )

    @staticmethod
    def _variant(registry: Any, base: Any, variant: str | None) -> Any:
        if variant is None or base.variant.value == variant:
            return base
        children = [
            v
            for v in registry.versions(base.name)
            if v.lineage.parent_version == base.version and v.variant.value == variant
        ]
        if not children:
            raise RegistryError(
                f"{base.ref} has no {variant} variant",
                hint=f"create one with 'modelfleet quantize {base.ref} --to {variant}'",
            )
        return children[-1]

    @staticmethod
    def _resolve_file(name: str, config: ModelConfig) -> ModelSource:
        path = Path(config.ref)
        try:
            graph = path.read_bytes()
        except OSError as exc:
            raise ModelfleetError(f"cannot read model file {path}: {exc}") from exc
        digest = hashlib.sha256(graph).hexdigest()
        expected = config.sha256
        if expected and expected != digest:
            raise ArtifactCorruptedError(str(path), expected=expected, actual=digest)
        return ModelSource(
            name=name,
            version=config.version or "1",
            variant=config.variant or "fp32",
            sha256=digest,
            graph=graph,
            origin=str(path),
            metrics=dict(config.metrics),
            profile=_read_profile(config.watch.profile),
        )

    def close(self) -> None:
        """Close the registry, if one was opened. Blocking."""
        if self._registry is not None:
            self._registry.close()
            self._registry = None
