"""Database engines and schema migrations for the metadata store (SQLite or PostgreSQL).

SQLite runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing on a lock upgrade. PostgreSQL
serialises migrations with an advisory lock. Opening a registry upgrades its schema to the
newest revision this release knows; a database from a newer release is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import NullPool

from modelfleet.errors import ConfigError, MissingDependencyError, RegistryError, SchemaVersionError

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_BEGIN_OPTION = "modelfleet_begin"
_MIGRATION_LOCK = 0x6D666C74  # "mflt": advisory lock id taken while migrating PostgreSQL


def create_engines(url: str) -> tuple[Engine, Engine]:
    """Return ``(read_engine, write_engine)`` for ``url``; they share one connection pool."""
    try:
        engine = _create(url)
    except NoSuchModuleError as exc:
        raise ConfigError(
            f"unsupported database URL {url!r}", hint="use sqlite:///path or postgresql://…"
        ) from exc
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            exc.name or "psycopg", "postgres", purpose="use a PostgreSQL registry"
        ) from exc
    write = engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
    return engine, write


def _create(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, future=True)
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # NullPool: a SQLite connection is cheap, and pooled ones would outlive forks of workers.
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module so that "begin" below decides how
    # each transaction starts (the pysqlite driver would otherwise defer BEGIN).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


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
    """Bring the schema up to ``target``; refuse a database written by a newer release."""
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
                    f"registry database {_redact(url)} is at schema revision {current}, which "
                    f"this modelfleet does not know (newest known: {script.get_current_head()})",
                    hint="upgrade modelfleet to the release that wrote this registry",
                )
            wanted = script.get_current_head() if target == "head" else target
            if current != wanted:
                logger.info("migrating registry schema %s -> %s", current, wanted)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
    except OperationalError as exc:
        raise RegistryError(
            f"cannot open the registry database {_redact(url)}: {exc.orig}",
            hint="check MODELFLEET_DB_URL and that the database server is running",
        ) from exc


def _redact(url: str) -> str:
    """Hide the password of a database URL in messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
