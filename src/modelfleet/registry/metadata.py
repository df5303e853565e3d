"""Metadata store: models, numbered versions, artifacts and stage pointers in SQL.

Version numbers come from a per-model counter incremented inside the same transaction that
writes the version, so two processes registering the same name queue on the counter's row
and always get distinct, gap-free numbers; a failed write rolls the number back.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from modelfleet.db import (
    ArtifactRow,
    Database,
    ModelRow,
    StageEventRow,
    StageRow,
    VersionRow,
    as_utc,
    insert_or_ignore,
)
from modelfleet.errors import ModelNotFoundError, RegistryError
from modelfleet.refs import ModelRef
from modelfleet.registry.records import (
    ArtifactRecord,
    Lineage,
    ModelSummary,
    ModelVersion,
    StageEvent,
    Task,
    Variant,
    VersionDraft,
)
from modelfleet.signature import Signature


class MetadataStore(Protocol):
    """Where the registry keeps everything but the artifact bytes."""

    def create_version(
        self, draft: VersionDraft, artifacts: Sequence[ArtifactRecord]
    ) -> ModelVersion:
        """Number and write a new version with its artifacts, atomically."""
        ...

    def get_version(self, ref: ModelRef) -> ModelVersion:
        """Resolve a reference to a version or raise :class:`ModelNotFoundError`."""
        ...

    def list_models(self) -> list[ModelSummary]:
        """Every model with its latest version and stage pointers."""
        ...

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        ...

    def set_stage(
        self, name: str, version: int, stage: str, *, actor: str, reason: str
    ) -> StageEvent:
        """Point ``stage`` of ``name`` at ``version`` and record who did it and why."""
        ...

    def add_event(
        self,
        name: str,
        version: int,
        stage: str,
        *,
        previous_version: int | None,
        actor: str,
        reason: str,
    ) -> StageEvent:
        """Append an entry to the audit trail of ``name`` without moving a stage pointer."""
        ...

    def history(self, name: str) -> list[StageEvent]:
        """The stage audit trail of ``name``, oldest first."""
        ...

    def attach_frozen(
        self,
        name: str,
        version: int,
        artifact: ArtifactRecord,
        verification: dict[str, Any],
        signature: Signature,
    ) -> ModelVersion:
        """Give a version registered without a graph its ONNX artifact, once."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class SqlMetadataStore:
    """A :class:`MetadataStore` on SQLAlchemy: SQLite by default, PostgreSQL at scale.

    ``database`` is the open :class:`~modelfleet.db.Database`; other owners of tables in the
    same database (the pipeline's step cache) share it through :attr:`Registry.database`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.database = Database(url)

    def close(self) -> None:
        """Release pooled connections."""
        self.database.close()

    # -- writes ---------------------------------------------------------------------------

    def create_version(
        self, draft: VersionDraft, artifacts: Sequence[ArtifactRecord]
    ) -> ModelVersion:
        """Number and write a new version with its artifacts, in one transaction."""
        with self.database.writing() as session:
            model_id = self._ensure_model(session, draft.name)
            number = session.execute(
                update(ModelRow)
                .where(ModelRow.id == model_id)
                .values(latest_version=ModelRow.latest_version + 1)
                .returning(ModelRow.latest_version)
            ).scalar_one()
            now = _now()
            row = VersionRow(
                model_id=model_id,
                version=number,
                framework=draft.framework,
                framework_version=draft.framework_version,
                task=draft.task.value,
                variant=draft.variant.value,
                signature=draft.signature.model_dump(mode="json"),
                metrics=dict(draft.metrics),
                params=draft.params,
                tags=dict(draft.tags),
                lineage=draft.lineage.model_dump(mode="json"),
                environment=dict(draft.environment),
                verification=draft.verification,
                created_at=now,
                created_by=draft.created_by,
            )
            session.add(row)
            session.flush()
            for artifact in artifacts:
                session.add(_artifact_row(row.id, artifact, now))
            return self._load(session, draft.name, number)

    def _ensure_model(self, session: Session, name: str) -> int:
        insert_or_ignore(session, ModelRow, name=name, latest_version=0, created_at=_now())
        return session.execute(select(ModelRow.id).where(ModelRow.name == name)).scalar_one()

    def set_stage(
        self, name: str, version: int, stage: str, *, actor: str, reason: str
    ) -> StageEvent:
        """Point ``stage`` at ``version`` and append the move to the audit trail."""
        with self.database.writing() as session:
            target = self._load(session, name, version)
            model_id = self._model_id(session, name)
            pointer = session.get(StageRow, (model_id, stage))
            previous = pointer.version if pointer else None
            from_stage = target.stages[-1] if target.stages else None
            now = _now()
            if pointer is None:
                session.add(
                    StageRow(model_id=model_id, stage=stage, version=version, updated_at=now)
                )
            else:
                pointer.version = version
                pointer.updated_at = now
            event = StageEventRow(
                model_id=model_id,
                stage=stage,
                version=version,
                previous_version=previous,
                from_stage=from_stage,
                actor=actor,
                reason=reason,
                created_at=now,
            )
            session.add(event)
            session.flush()
            return _event(name, event)

    def add_event(
        self,
        name: str,
        version: int,
        stage: str,
        *,
        previous_version: int | None,
        actor: str,
        reason: str,
    ) -> StageEvent:
        """Append an entry to the audit trail (a release's verdict); no pointer moves."""
        with self.database.writing() as session:
            self._load(session, name, version)  # the version must exist
            event = StageEventRow(
                model_id=self._model_id(session, name),
                stage=stage,
                version=version,
                previous_version=previous_version,
                from_stage=None,
                actor=actor,
                reason=reason,
                created_at=_now(),
            )
            session.add(event)
            session.flush()
            return _event(name, event)

    def attach_frozen(
        self,
        name: str,
        version: int,
        artifact: ArtifactRecord,
        verification: dict[str, Any],
        signature: Signature,
    ) -> ModelVersion:
        """Add the ONNX artifact to a version that has none; anything else stays as it was."""
        with self.database.writing() as session:
            current = self._load(session, name, version)
            if current.artifact(artifact.role) is not None:
                raise RegistryError(
                    f"{current.ref} already has a {artifact.role} artifact; versions are immutable",
                    hint="register a new version to change the model",
                )
            row = session.execute(
                select(VersionRow)
                .join(ModelRow)
                .where(ModelRow.name == name, VersionRow.version == version)
            ).scalar_one()
            row.verification = verification
            row.signature = signature.model_dump(mode="json")
            session.add(_artifact_row(row.id, artifact, _now()))
            session.flush()
            return self._load(session, name, version)

    # -- reads ----------------------------------------------------------------------------

    def get_version(self, ref: ModelRef) -> ModelVersion:
        """Resolve ``name``, ``name:N`` or ``name@stage``."""
        with self.database.reading() as session:
            model_id = self._model_id(session, ref.name)
            if ref.version is not None:
                return self._load(session, ref.name, ref.version)
            if ref.stage is not None:
                pointer = session.get(StageRow, (model_id, ref.stage.value))
                if pointer is None:
                    raise ModelNotFoundError(
                        str(ref),
                        hint=f"no version of {ref.name} is in {ref.stage.value}; promote one "
                        f"with 'modelfleet promote {ref.name}:N --to {ref.stage.value}'",
                    )
                return self._load(session, ref.name, pointer.version)
            latest = session.scalar(select(ModelRow.latest_version).where(ModelRow.id == model_id))
            return self._load(session, ref.name, int(latest or 0))

    def list_models(self) -> list[ModelSummary]:
        """Every model, alphabetically."""
        with self.database.reading() as session:
            counts = dict(
                session.execute(
                    select(VersionRow.model_id, func.count()).group_by(VersionRow.model_id)
                ).all()
            )
            stages: dict[int, dict[str, int]] = {}
            for pointer in session.scalars(select(StageRow)):
                stages.setdefault(pointer.model_id, {})[pointer.stage] = pointer.version
            return [
                ModelSummary(
                    name=m.name,
                    latest_version=m.latest_version,
                    versions=int(counts.get(m.id, 0)),
                    stages=stages.get(m.id, {}),
                    created_at=m.created_at,
                )
                for m in session.scalars(select(ModelRow).order_by(ModelRow.name))
                if counts.get(m.id)
            ]

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        with self.database.reading() as session:
            model_id = self._model_id(session, name)
            numbers = session.scalars(
                select(VersionRow.version)
                .where(VersionRow.model_id == model_id)
                .order_by(VersionRow.version)
            ).all()
            return [self._load(session, name, n) for n in numbers]

    def history(self, name: str) -> list[StageEvent]:
        """The stage audit trail of ``name``, oldest first."""
        with self.database.reading() as session:
            model_id = self._model_id(session, name)
            rows = session.scalars(
                select(StageEventRow)
                .where(StageEventRow.model_id == model_id)
                .order_by(StageEventRow.id)
            )
            return [_event(name, row) for row in rows]

    def _model_id(self, session: Session, name: str) -> int:
        model_id = session.scalar(select(ModelRow.id).where(ModelRow.name == name))
        has_versions = model_id is not None and session.scalar(
            select(func.count()).select_from(VersionRow).where(VersionRow.model_id == model_id)
        )
        if model_id is None or not has_versions:
            names = session.scalars(select(ModelRow.name)).all()
            close = difflib.get_close_matches(name, names, n=3)
            raise ModelNotFoundError(
                name,
                hint=f"did you mean {', '.join(close)}?" if close else None,
            )
        return model_id

    def _load(self, session: Session, name: str, version: int) -> ModelVersion:
        row = session.execute(
            select(VersionRow)
            .join(ModelRow)
            .where(ModelRow.name == name, VersionRow.version == version)
        ).scalar_one_or_none()
        if row is None:
            numbers = session.scalars(
                select(VersionRow.version)
                .join(ModelRow)
                .where(ModelRow.name == name)
                .order_by(VersionRow.version)
            ).all()
            known = _describe_numbers(list(numbers))
            raise ModelNotFoundError(
                f"{name}:{version}", known=known, hint=f"run 'modelfleet versions {name}'"
            )
        artifacts = session.scalars(
            select(ArtifactRow).where(ArtifactRow.version_id == row.id).order_by(ArtifactRow.id)
        )
        stages = session.scalars(
            select(StageRow.stage).where(
                StageRow.model_id == row.model_id, StageRow.version == version
            )
        ).all()
        return ModelVersion(
            name=name,
            version=row.version,
            framework=row.framework,
            framework_version=row.framework_version,
            task=Task(row.task),
            variant=Variant(row.variant),
            signature=Signature.model_validate(row.signature),
            metrics=row.metrics,
            params=row.params,
            tags=row.tags,
            lineage=Lineage.model_validate(row.lineage),
            environment=row.environment,
            verification=row.verification,
            created_at=as_utc(row.created_at),
            created_by=row.created_by,
            artifacts=tuple(
                ArtifactRecord(
                    role=a.role,
                    key=a.key,
                    uri=a.uri,
                    sha256=a.sha256,
                    size=a.size,
                    media_type=a.media_type,
                )
                for a in artifacts
            ),
            stages=tuple(sorted(stages, key=_stage_order)),
        )


def _stage_order(stage: str) -> int:
    order = ("dev", "qa", "uat", "prod")
    return order.index(stage) if stage in order else len(order)


def _describe_numbers(numbers: list[int]) -> str | None:
    if not numbers:
        return None
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"versions {numbers[0]}-{numbers[-1]}"
    return "versions " + ", ".join(str(n) for n in numbers)


def _artifact_row(version_id: int, artifact: ArtifactRecord, now: datetime) -> ArtifactRow:
    return ArtifactRow(
        version_id=version_id,
        role=artifact.role,
        key=artifact.key,
        uri=artifact.uri,
        sha256=artifact.sha256,
        size=artifact.size,
        media_type=artifact.media_type,
        created_at=now,
    )


def _event(name: str, row: StageEventRow) -> StageEvent:
    return StageEvent(
        name=name,
        stage=row.stage,
        version=row.version,
        previous_version=row.previous_version,
        from_stage=row.from_stage,
        actor=row.actor,
        reason=row.reason,
        created_at=as_utc(row.created_at),
    )
