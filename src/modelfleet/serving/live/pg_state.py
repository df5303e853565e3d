"""The PostgreSQL side of shared serving state: a time-bounded engine, its schema, its one error.

The state database is not necessarily the registry's: it has its own Alembic history in
``state_migrations/`` with its own version table, so both can share one database or not.
Replicas starting together upgrade it one at a time, serialised by an advisory lock (a
different id from the registry's). Every failure to reach or use it becomes a
:class:`StateUnavailableError` that names the database (password hidden) and the reason.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from modelfleet.errors import ConfigError, MissingDependencyError, StateUnavailableError
from modelfleet.serving.live.stores import _shown

logger = logging.getLogger(__name__)

VERSION_TABLE = "modelfleet_state_version"
_MIGRATIONS = Path(__file__).parent / "state_migrations"
_MIGRATION_LOCK = 0x6D667374  # "mfst"; the registry's is "mflt"
# What a call may hit: the driver's errors (wrapped by SQLAlchemy), pool timeouts, Alembic.
FAILURES = (SQLAlchemyError, CommandError)


def state_engine(url: str, timeout_s: float) -> Engine:
    """An engine for ``url`` whose connects and statements give up after about ``timeout_s``.

    Creating it opens no connection. The pool pings a connection before lending it, so a
    restarted server costs a reconnect, not an error.
    """
    millis = max(1, round(timeout_s * 1000))
    connect_args = {
        # libpq (and psycopg) round this to whole seconds, 2 at least.
        "connect_timeout": max(2, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={millis} -c lock_timeout={millis} "
        f"-c idle_in_transaction_session_timeout={max(10_000, 5 * millis)}",
        # A peer that vanished without a word (pod gone, network cut) is noticed too.
        "tcp_user_timeout": millis,
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout_s)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "application_name": "modelfleet-serving",
    }
    try:
        return create_engine(
            _psycopg_url(url),
            connect_args=connect_args,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
            pool_timeout=timeout_s,
        )
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            exc.name or "psycopg", "postgres", purpose="keep serving state in PostgreSQL"
        ) from exc
    except (SQLAlchemyError, ValueError) as exc:
        raise ConfigError(f"invalid state URL {_shown(url)}: {exc}") from exc


def _psycopg_url(url: str) -> str:
    """``postgres://``, ``postgresql://`` and ``postgresql+psycopg://`` all mean psycopg 3."""
    scheme, sep, rest = url.partition("://")
    base, _, driver = scheme.lower().partition("+")
    if not sep or base not in ("postgresql", "postgres") or driver not in ("", "psycopg"):
        raise ConfigError(
            f"state URL {_shown(url)} is not a PostgreSQL URL for psycopg",
            hint="use postgresql://USER:PASSWORD@HOST:PORT/DB",
        )
    return f"postgresql+psycopg://{rest}"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def upgrade_state_schema(engine: Engine, url: str) -> None:
    """Bring the state tables to the newest revision; refuse a database from a newer release."""
    cfg = _config()
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    with engine.begin() as conn:
        if _revision(conn) == head:
            return  # the common case: no lock, one small read
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
        current = _revision(conn)  # another replica may have just done it
        if current == head:
            return
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise StateUnavailableError(
                f"state database {_shown(url)} is at schema revision {current}, which this "
                f"modelfleet does not know (newest known: {head})",
                hint="upgrade modelfleet on this replica to the release the others run",
            )
        logger.info("migrating serving state schema %s -> %s", current, head)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def unavailable(url: str, exc: BaseException) -> StateUnavailableError:
    """The error every failed call raises: backend, database (password hidden), reason."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    line = " ".join(str(reason).split()) or type(reason).__name__
    if len(line) > 300:
        line = line[:297] + "..."
    return StateUnavailableError(f"state backend postgresql {_shown(url)} failed: {line}")
