"""The registry: one object joining the metadata store and the artifact store.

Writes go artifacts first (content-addressed, so a failed registration leaves at most an
unreferenced blob), then metadata in one transaction, so a version is visible only whole.
:func:`collect_garbage` finds (and removes) those unreferenced blobs and stray temp files.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from modelfleet.config import Settings
from modelfleet.db import ArtifactRow, Database, JobRow, StepCacheRow
from modelfleet.errors import (
    ArtifactCorruptedError,
    ArtifactNotFoundError,
    PromotionRefusedError,
    RegistryError,
)
from modelfleet.refs import ModelRef, Stage, parse_ref
from modelfleet.registry.artifacts import (
    ArtifactStore,
    Garbage,
    StoredFile,
    open_artifact_store,
)
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

    def record_event(
        self,
        version: ModelVersion,
        stage: Stage,
        reason: str,
        *,
        replaced: int | None = None,
    ) -> StageEvent:
        """Add an entry about ``version`` in ``stage`` to the audit trail; no stage moves.

        A release records its verdict so; ``replaced`` is the version it took over from.
        """
        return self.metadata.add_event(
            version.name,
            version.version,
            stage.value,
            previous_version=replaced,
            actor=self.user,
            reason=reason,
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


# An unreferenced file younger than this may belong to a write in flight: a registration
# stores its artifacts before it commits the version that references them.
GC_MIN_AGE_S = 60.0
GC_DEFAULT_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class GcReport:
    """What garbage collection found; ``deleted`` says whether it removed it."""

    store: str
    garbage: tuple[Garbage, ...]
    deleted: bool
    referenced: int  # artifacts kept because a version, job log or cached step names them
    young: int  # unreferenced files kept: younger than the safe age
    undated: int  # unreferenced files kept: the store gives no modification time

    @property
    def size(self) -> int:
        """Bytes the garbage takes."""
        return sum(g.size for g in self.garbage)


def collect_garbage(
    registry: Registry,
    *,
    delete: bool = False,
    min_age_s: float = GC_DEFAULT_AGE_S,
    now: float | None = None,
) -> GcReport:
    """Find (and with ``delete`` remove) unreferenced artifacts and temporary files.

    Referenced: named by a version, a job's log, a step-cache entry or its manifest. The
    store is listed before references are read, so a version committed meanwhile protects
    its files; files younger than ``min_age_s`` may be writes not yet committed. Reused bytes
    turn young again on local stores; object stores cannot, so there a registration storing
    an old orphan's bytes during gc could lose them (register again to repair)."""
    if min_age_s < GC_MIN_AGE_S:
        raise RegistryError(
            f"minimum age {min_age_s:g} s is too short to be safe",
            hint=f"give {GC_MIN_AGE_S:g} s or more: younger files may be writes in flight",
        )
    files = list(registry.artifacts.list_files())
    referenced = _referenced(registry)
    clock = time.time() if now is None else now  # wall clock: compared with file times
    garbage: list[Garbage] = []
    kept = {"referenced": 0, "young": 0, "undated": 0}
    for found in files:
        kind = _garbage_kind(found, referenced)
        if kind is None:
            kept["referenced"] += found.sha256 is not None
        elif found.modified is None:
            kept["undated"] += 1
        elif clock - found.modified < min_age_s:
            kept["young"] += 1
        else:
            garbage.append(Garbage(found.key, kind, found.size, clock - found.modified))
    if delete:
        for item in garbage:
            registry.artifacts.delete(item.key)
        logger.info("deleted %d unreferenced files from %s", len(garbage), registry.artifacts.url)
    return GcReport(registry.artifacts.url, tuple(garbage), delete, **kept)


def _garbage_kind(found: StoredFile, referenced: set[str]) -> str | None:
    if found.temporary:
        return "temporary"
    if found.sha256 is None or found.sha256 in referenced:
        return None  # referenced, or a file the store did not write: never touched
    return "orphan"


def _referenced(registry: Registry) -> set[str]:
    """Digests of every artifact something in the database points at."""
    with registry.database.reading() as session:
        digests = set(session.scalars(select(ArtifactRow.sha256)))
        logs = session.scalars(select(JobRow.log_key).where(JobRow.log_key.is_not(None)))
        digests |= {key.rsplit("/", 1)[-1] for key in logs if key}
        cached = session.execute(select(StepCacheRow.artifact_key, StepCacheRow.sha256)).all()
    for key, sha256 in cached:
        digests.add(sha256)
        try:
            manifest = json.loads(registry.artifacts.get_bytes(key, sha256))
        except (ArtifactNotFoundError, ArtifactCorruptedError, ValueError) as exc:
            # Nothing can read the outputs of an entry whose manifest is lost.
            logger.warning("step cache manifest %s unreadable: %s", key, exc)
            continue
        digests |= {str(part["sha256"]) for part in manifest.values()}
    return digests
