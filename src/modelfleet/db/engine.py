"""Engines for the modelfleet database: SQLite tuned for concurrent writers, or PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and write transactions start with
``BEGIN IMMEDIATE`` so two writers queue instead of failing on a lock upgrade. PostgreSQL
gets a pre-ping pool, so a restarted server costs one retry, not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool, StaticPool

from modelfleet.errors import ConfigError, MissingDependencyError

_BEGIN_OPTION = "modelfleet_begin"


def create_engines(url: str) -> tuple[Engine, Engine]:
    """Return ``(read_engine, write_engine)`` for ``url``; they share one connection pool.

    On SQLite the write engine starts its transactions with ``BEGIN IMMEDIATE``.
    """
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


def redact_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


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
    else:
        # An in-memory database lives as long as its one connection: every user shares it.
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
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
