"""The model registry: versions, stages and lineage in SQL; artifacts by sha256 via fsspec."""

from __future__ import annotations

from modelfleet.registry.artifacts import (
    ArtifactStore,
    FsspecArtifactStore,
    Garbage,
    StoredFile,
    open_artifact_store,
)
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
from modelfleet.registry.registry import (
    GC_DEFAULT_AGE_S,
    ArtifactPayload,
    GcReport,
    Registry,
    collect_garbage,
)
from modelfleet.registry.requirements import Requirement, parse_requirements

__all__ = [
    "GC_DEFAULT_AGE_S",
    "ArtifactPayload",
    "ArtifactRecord",
    "ArtifactStore",
    "FsspecArtifactStore",
    "Garbage",
    "GcReport",
    "Lineage",
    "MetadataStore",
    "ModelSummary",
    "ModelVersion",
    "Registry",
    "Requirement",
    "Role",
    "SqlMetadataStore",
    "StageEvent",
    "StoredFile",
    "Task",
    "Variant",
    "VersionDraft",
    "collect_garbage",
    "current_user",
    "data_sha256",
    "git_state",
    "open_artifact_store",
    "package_version",
    "parse_requirements",
    "runtime_environment",
]
