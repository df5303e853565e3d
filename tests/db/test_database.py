"""Opening the database: schema created and upgraded, newer releases refused, writers queue."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

import modelfleet as mf
from modelfleet.db import (
    Database,
    ModelRow,
    create_engines,
    current_revision,
    head_revision,
    redact_url,
    upgrade_schema,
)

WRITERS = 4
INCREMENTS = 25


def test_opening_an_empty_database_creates_the_newest_schema(db_url: str) -> None:
    with Database(db_url) as db:
        assert current_revision(db.engine) == head_revision()
        with db.reading() as session:
            assert session.scalars(select(ModelRow)).all() == []


def test_an_older_schema_is_upgraded_on_open(db_url: str) -> None:
    read, write = create_engines(db_url)
    upgrade_schema(write, db_url, target="0001")
    assert current_revision(read) == "0001"
    read.dispose()
    with Database(db_url) as db:
        assert current_revision(db.engine) == head_revision()


def test_a_database_from_a_newer_release_is_refused(db_url: str) -> None:
    Database(db_url).close()
    read, write = create_engines(db_url)
    with write.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    read.dispose()
    with pytest.raises(mf.SchemaVersionError, match="revision f00d") as caught:
        Database(db_url)
    assert "upgrade modelfleet" in str(caught.value)


def test_an_unreachable_server_is_explained_without_its_password() -> None:
    url = "postgresql://alice:s3cret@127.0.0.1:1/fleet"
    with pytest.raises(mf.RegistryError, match="cannot open the registry database") as caught:
        Database(url)
    assert "s3cret" not in str(caught.value)
    assert "alice:***@127.0.0.1:1/fleet" in str(caught.value)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://bob:pw@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact_url("sqlite:///tmp/registry.db") == "sqlite:///tmp/registry.db"


def test_an_unknown_database_url_is_a_config_error() -> None:
    with pytest.raises(mf.ConfigError, match="unsupported database URL"):
        Database("oracle+nothing://x/y")


def _increment(db: Database, start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        start.wait()
        for _ in range(INCREMENTS):
            with db.writing() as session:
                row = session.scalars(select(ModelRow).where(ModelRow.name == "n")).one()
                seen = row.latest_version
                time.sleep(0.001)  # widen the read-then-write window another writer could use
                row.latest_version = seen + 1
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def test_concurrent_sqlite_writers_queue_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fleet.db"
    databases = [Database(url) for _ in range(WRITERS)]
    with databases[0].writing() as session:
        session.add(ModelRow(name="n", latest_version=0, created_at=datetime.now(UTC)))
    start, errors = threading.Barrier(WRITERS), list[BaseException]()
    threads = [threading.Thread(target=_increment, args=(db, start, errors)) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with databases[0].reading() as session:
        total = session.scalar(select(ModelRow.latest_version).where(ModelRow.name == "n"))
    assert total == WRITERS * INCREMENTS  # no "database is locked", no lost update
    for db in databases:
        db.close()


def test_sqlite_readers_see_committed_data_while_a_writer_holds_its_transaction(
    tmp_path: Path,
) -> None:
    with Database(f"sqlite:///{tmp_path}/fleet.db") as db:
        with db.writing() as session:
            session.add(ModelRow(name="n", latest_version=1, created_at=datetime.now(UTC)))
        with db.writing() as session:
            session.scalars(select(ModelRow)).one().latest_version = 2
            session.flush()
            with db.reading() as reader:
                assert reader.scalar(select(ModelRow.latest_version)) == 1
        with db.reading() as reader:
            assert reader.scalar(select(ModelRow.latest_version)) == 2
