"""The model registry: versions, stages and lineage in SQL; artifacts by sha256 via fsspec."""

from __future__ import annotations

from modelfleet.registry.artifacts import ArtifactStore, FsspecArtifactStore, open_artifact_store
from modelfleet.registry.lineage import (
    current_user,
    data_sha256,
    git_state,
    package_version,
    runtime_environment,
)
from modelfleet.registry.metadata import MetadataStore, SqlMetadataStore
from modelfleet.registry.records import (
    ArtifactRecord,
    Lineage,
    ModelSummary,
    ModelVersion,
    Role,
    StageEvent,
    Task,
    Variant,
    VersionDraft,
)
from modelfleet.registry.registry import ArtifactPayload, Registry
from modelfleet.registry.requirements import Requirement, parse_requirements

__all__ = [
    "ArtifactPayload",
    "ArtifactRecord",
    "ArtifactStore",
    "FsspecArtifactStore",
    "Lineage",
    "MetadataStore",
    "ModelSummary",
    "ModelVersion",
    "Registry",
    "Requirement",
    "Role",
    "SqlMetadataStore",
    "StageEvent",
    "Task",
    "Variant",
    "VersionDraft",
    "current_user",
    "data_sha256",
    "git_state",
    "open_artifact_store",
    "package_version",
    "parse_requirements",
    "runtime_environment",
]
