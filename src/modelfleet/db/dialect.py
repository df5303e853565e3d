"""What SQLite and PostgreSQL do differently, hidden behind two helpers.

``insert_or_ignore`` writes a row unless one with the same key exists, atomically, so two
processes creating the same model or cache entry at once both succeed. ``as_utc`` undoes
SQLite's habit of returning naive datetimes from timezone-aware columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast, overload

from sqlalchemy import CursorResult, insert, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session


def insert_or_ignore(session: Session, row_type: type[DeclarativeBase], **values: Any) -> bool:
    """Insert a ``row_type`` row with ``values`` unless a unique key already holds one.

    Returns True when this call wrote the row. The row is written in the session's
    transaction, so it is rolled back with it.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # psycopg reports no row count for this statement, so ask for the row back instead.
        query = postgresql.insert(row_type).values(**values).on_conflict_do_nothing()
        return session.execute(query.returning(literal(True))).first() is not None
    if dialect == "sqlite":
        # The row count, not RETURNING: SQLite before 3.35 (still in some distributions)
        # has no RETURNING.
        result = session.execute(sqlite.insert(row_type).values(**values).on_conflict_do_nothing())
        return cast("CursorResult[Any]", result).rowcount > 0
    # Other databases have no portable ON CONFLICT: a savepoint keeps a duplicate-key
    # failure from aborting the caller's transaction.
    try:
        with session.begin_nested():
            session.execute(insert(row_type).values(**values))
    except IntegrityError:
        return False
    return True


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as a timezone-aware datetime; a naive one (what SQLite returns) is UTC.

    Every timestamp modelfleet writes is UTC, so reading a naive one back as UTC is exact.
    """
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
