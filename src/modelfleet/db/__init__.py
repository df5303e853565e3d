"""The modelfleet database: one engine set-up, migrations and dialect helpers for its owners.

The registry's metadata store, the job queue and the pipeline's step cache share one SQL
database (a SQLite file by default, PostgreSQL at scale). This package opens it
(:class:`Database`, :func:`create_engines`), keeps its schema current (:func:`upgrade_schema`
and the Alembic migrations in ``migrations/``), declares its tables (``*Row``) and hides the
differences between SQLite and PostgreSQL (:func:`insert_or_ignore`, :func:`as_utc`). It
imports nothing from the packages that use it.
"""

from __future__ import annotations

from modelfleet.db.database import Database
from modelfleet.db.dialect import as_utc, insert_or_ignore
from modelfleet.db.engine import create_engines, redact_url
from modelfleet.db.migrate import current_revision, head_revision, upgrade_schema
from modelfleet.db.schema import (
    ArtifactRow,
    Base,
    JobLogRow,
    JobRow,
    ModelRow,
    StageEventRow,
    StageRow,
    StepCacheRow,
    VersionRow,
    WorkerRow,
)

__all__ = [
    "ArtifactRow",
    "Base",
    "Database",
    "JobLogRow",
    "JobRow",
    "ModelRow",
    "StageEventRow",
    "StageRow",
    "StepCacheRow",
    "VersionRow",
    "WorkerRow",
    "as_utc",
    "create_engines",
    "current_revision",
    "head_revision",
    "insert_or_ignore",
    "redact_url",
    "upgrade_schema",
]
