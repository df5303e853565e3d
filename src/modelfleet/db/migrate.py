"""Schema migrations of the modelfleet database: Alembic, run on the connection we hand over.

Opening the database upgrades its schema to the newest revision this release knows; a
database from a newer release is refused. PostgreSQL serialises concurrent upgrades with
an advisory lock; SQLite does so through ``BEGIN IMMEDIATE`` on the write engine.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from modelfleet.db.engine import redact_url
from modelfleet.errors import RegistryError, SchemaVersionError

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6D666C74  # "mflt": advisory lock id taken while migrating PostgreSQL


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this release knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RegistryError("modelfleet ships no migrations; reinstall the package")
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_schema(write_engine: Engine, url: str, target: str = "head") -> None:
    """Bring the schema up to ``target``; refuse a database written by a newer release.

    ``url`` names the database in messages (its password hidden).
    """
    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    try:
        with write_engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and current not in known:
                raise SchemaVersionError(
                    f"registry database {redact_url(url)} is at schema revision {current}, "
                    f"which this modelfleet does not know (newest known: "
                    f"{script.get_current_head()})",
                    hint="upgrade modelfleet to the release that wrote this registry",
                )
            wanted = script.get_current_head() if target == "head" else target
            if current != wanted:
                logger.info("migrating registry schema %s -> %s", current, wanted)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
    except OperationalError as exc:
        raise RegistryError(
            f"cannot open the registry database {redact_url(url)}: {exc.orig}",
            hint="check MODELFLEET_DB_URL and that the database server is running",
        ) from exc
