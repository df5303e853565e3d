"""The registry: one object joining the metadata store and the artifact store.

Writes go artifacts first (content-addressed, so a failed registration leaves at most an
unreferenced blob), then metadata in one transaction, so a version is visible only whole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelfleet.config import Settings
from modelfleet.db import Database
from modelfleet.errors import PromotionRefusedError, RegistryError
from modelfleet.refs import ModelRef, Stage, parse_ref
from modelfleet.registry.artifacts import ArtifactStore, open_artifact_store
from modelfleet.registry.lineage import current_user
from modelfleet.registry.metadata import MetadataStore, SqlMetadataStore
from modelfleet.registry.records import (
    ArtifactRecord,
    ModelSummary,
    ModelVersion,
    StageEvent,
    VersionDraft,
)
from modelfleet.registry.requirements import parse_requirements
from modelfleet.signature import Signature

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ArtifactPayload:
    """Bytes to store with a new version, and what they are."""

    role: str
    data: bytes
    media_type: str


class Registry:
    """Register, find, promote and read model versions."""

    def __init__(self, metadata: MetadataStore, artifacts: ArtifactStore, *, user: str) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.user = user

    @classmethod
    def open(cls, settings: Settings) -> Registry:
        """Open (and migrate if needed) the registry the settings point at."""
        metadata = SqlMetadataStore(settings.db_url)
        artifacts = open_artifact_store(settings.artifacts, **settings.artifacts_options)
        return cls(metadata, artifacts, user=current_user(settings.user))

    @property
    def database(self) -> Database:
        """The SQL database the metadata lives in, for tables kept beside the registry's.

        The pipeline's step cache indexes its outputs there. A registry whose metadata store
        is not SQL has none.
        """
        if isinstance(self.metadata, SqlMetadataStore):
            return self.metadata.database
        raise RegistryError(
            f"this registry keeps its metadata in a {type(self.metadata).__name__}, not in a "
            "SQL database",
            hint="open the registry with Registry.open(settings) to use a SQL database",
        )

    def close(self) -> None:
        """Release database connections."""
        close = getattr(self.metadata, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------

    def _store(self, payload: ArtifactPayload) -> ArtifactRecord:
        stored = self.artifacts.put_bytes(payload.data)
        return ArtifactRecord(
            role=payload.role,
            key=stored.key,
            uri=stored.uri,
            sha256=stored.sha256,
            size=stored.size,
            media_type=payload.media_type,
        )

    def create_version(
        self, draft: VersionDraft, payloads: Sequence[ArtifactPayload]
    ) -> ModelVersion:
        """Store the payloads, then write the version; returns it with its new number."""
        records = [self._store(p) for p in payloads]
        version = self.metadata.create_version(draft, records)
        logger.info("registered %s (%s)", version.ref, version.framework)
        return version

    def attach_frozen(
        self,
        version: ModelVersion,
        payload: ArtifactPayload,
        verification: dict[str, object],
        signature: Signature,
    ) -> ModelVersion:
        """Add the frozen graph to a version registered without one."""
        record = self._store(payload)
        return self.metadata.attach_frozen(
            version.name, version.version, record, dict(verification), signature
        )

    def promote(
        self,
        ref: str | ModelRef,
        stage: Stage,
        *,
        require: Sequence[str] = (),
        reason: str | None = None,
    ) -> StageEvent:
        """Move ``stage`` to the referenced version if every requirement holds."""
        version = self.get(ref)
        failures = [
            failure
            for requirement in parse_requirements(list(require))
            if (failure := requirement.failure(version.metrics)) is not None
        ]
        if failures:
            raise PromotionRefusedError(version.ref, stage.value, failures)
        why = reason or (f"requirements met: {', '.join(require)}" if require else "manual")
        return self.metadata.set_stage(
            version.name, version.version, stage.value, actor=self.user, reason=why
        )

    # -- reads ----------------------------------------------------------------------------

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """Resolve a reference (``name``, ``name:3``, ``name@prod``)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        return self.metadata.get_version(parsed)

    def models(self) -> list[ModelSummary]:
        """Every registered model."""
        return self.metadata.list_models()

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        return self.metadata.list_versions(name)

    def history(self, name: str) -> list[StageEvent]:
        """Stage moves of a model, oldest first."""
        return self.metadata.history(name)

    def read_artifact(self, version: ModelVersion, role: str) -> bytes:
        """The verified bytes of one of the version's artifacts."""
        return self.artifacts.get_bytes(*self._locate(version, role))

    def reference_profile(self, version: ModelVersion) -> bytes | None:
        """The training-data profile drift is measured against (JSON), or None.

        Quantized variants have none of their own: they share the one of the version they
        were derived from.
        """
        seen: set[int] = set()
        current: ModelVersion | None = version
        while current is not None and current.version not in seen:
            seen.add(current.version)
            if current.artifact("profile") is not None:
                return self.read_artifact(current, "profile")
            parent = current.lineage.parent_version
            current = self.get(f"{current.name}:{parent}") if parent else None
        return None

    def fetch_artifact(self, version: ModelVersion, role: str, dest: Path) -> Path:
        """Copy one of the version's artifacts to ``dest``, verified."""
        key, sha = self._locate(version, role)
        return self.artifacts.fetch(key, sha, dest)

    def _locate(self, version: ModelVersion, role: str) -> tuple[str, str]:
        record = version.artifact(role)
        if record is None:
            roles = ", ".join(a.role for a in version.artifacts) or "none"
            hint = f"run 'modelfleet freeze {version.ref}'" if role == "onnx" else None
            raise RegistryError(
                f"{version.ref} has no {role} artifact (it has: {roles})", hint=hint
            )
        return record.key, record.sha256
