"""One open modelfleet database: its engines, its schema brought up to date, its sessions.

The registry's metadata store, the job queue and the pipeline's step cache each hold a
:class:`Database`; reads and writes go through :meth:`Database.reading` and
:meth:`Database.writing`, so every writer queues the same way (``BEGIN IMMEDIATE`` on
SQLite, row locks on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from modelfleet.db.engine import create_engines
from modelfleet.db.migrate import upgrade_schema


class Database:
    """The database at ``url``, migrated to the newest schema this release knows on open.

    Raises :class:`~modelfleet.errors.SchemaVersionError` for a database written by a newer
    release, :class:`~modelfleet.errors.RegistryError` when it cannot be reached and
    :class:`~modelfleet.errors.ConfigError` for a URL SQLAlchemy does not understand.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._read, self._write = create_engines(url)
        try:
            upgrade_schema(self._write, url)
        except BaseException:
            self._read.dispose()
            raise

    @property
    def engine(self) -> Engine:
        """The engine reads use (for tools that inspect the database directly)."""
        return self._read

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session in a read transaction; rows it loads expire when the block ends."""
        with Session(self._read) as session, session.begin():
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends without error.

        Rows stay readable after the commit, so callers may build results from them.
        """
        with Session(self._write, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        """Release pooled connections."""
        self._read.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
