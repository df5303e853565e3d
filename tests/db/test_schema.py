"""The one schema on SQLite and PostgreSQL: migrations match the tables, constraints hold alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

import modelfleet as mf
from modelfleet.db import (
    Base,
    Database,
    ModelRow,
    StageRow,
    VersionRow,
    create_engines,
    current_revision,
    head_revision,
)

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    with Database(db_url) as db:
        yield db


def _version(model_id: int, number: int) -> VersionRow:
    empty: dict[str, object] = {}
    return VersionRow(
        model_id=model_id,
        version=number,
        framework="onnx",
        framework_version="1.17",
        task="other",
        variant="fp32",
        signature={"inputs": []},
        metrics=empty,
        params=empty,
        tags=empty,
        lineage=empty,
        environment=empty,
        verification=None,
        created_at=WHEN,
        created_by="alice",
    )


def _write(db: Database, *rows: Base) -> None:
    """Write ``rows`` in one transaction, one flush each, so a clash fails at that row."""
    with db.writing() as session:
        for row in rows:
            session.add(row)
            session.flush()


def _add_model(db: Database, name: str = "churn") -> int:
    with db.writing() as session:
        row = ModelRow(name=name, latest_version=0, created_at=WHEN)
        session.add(row)
        session.flush()
        return row.id


def test_the_migrations_build_exactly_the_declared_tables(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    tables = set(inspect(database.engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_a_version_of_a_model_that_does_not_exist_is_refused(database: Database) -> None:
    with pytest.raises(IntegrityError):
        _write(database, _version(model_id=999, number=1))
    with database.reading() as session:
        assert session.scalar(select(func.count()).select_from(VersionRow)) == 0


def test_a_version_number_is_taken_once_per_model(database: Database) -> None:
    churn, fraud = _add_model(database, "churn"), _add_model(database, "fraud")
    _write(database, _version(churn, 1), _version(fraud, 1))
    with pytest.raises(IntegrityError):  # the whole transaction goes, version 2 too
        _write(database, _version(churn, 2), _version(churn, 1))
    with database.reading() as session:
        rows = session.execute(select(VersionRow.model_id, VersionRow.version)).all()
    assert sorted(tuple(r) for r in rows) == [(churn, 1), (fraud, 1)]


def test_a_model_name_and_a_stage_pointer_are_unique(database: Database) -> None:
    model_id = _add_model(database)
    with pytest.raises(IntegrityError):
        _add_model(database)
    _write(database, StageRow(model_id=model_id, stage="prod", version=1, updated_at=WHEN))
    with pytest.raises(IntegrityError):
        _write(database, StageRow(model_id=model_id, stage="prod", version=2, updated_at=WHEN))
    with database.reading() as session:
        assert session.scalars(select(StageRow.version)).all() == [1]


def test_reopening_a_current_database_keeps_its_data(db_url: str) -> None:
    with Database(db_url) as db:
        _add_model(db)
    for _ in range(2):
        with Database(db_url) as db:
            assert current_revision(db.engine) == head_revision()
            with db.reading() as session:
                assert session.scalars(select(ModelRow.name)).all() == ["churn"]


def test_a_newer_database_is_refused_untouched(db_url: str) -> None:
    with Database(db_url) as db:
        _add_model(db)
    read, write = create_engines(db_url)
    with write.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(mf.SchemaVersionError) as caught:
        Database(db_url)
    message = str(caught.value)
    assert "schema revision 0099" in message
    assert f"newest known: {head_revision()}" in message
    assert "upgrade modelfleet to the release that wrote this registry" in message
    assert isinstance(caught.value, mf.RegistryError)
    # Refusing wrote nothing: the revision and every row are as the newer release left them.
    assert current_revision(read) == "0099"
    with read.connect() as conn:
        assert conn.execute(text("SELECT name FROM models")).scalars().all() == ["churn"]
    assert set(inspect(read).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    read.dispose()


def test_a_sqlite_file_in_folders_not_made_yet_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "registry.db"
    with Database(f"sqlite:///{path}") as db:
        _add_model(db)
    assert path.is_file()
    with Database(f"sqlite:///{path}") as db, db.reading() as session:
        assert session.scalars(select(ModelRow.name)).all() == ["churn"]


def test_a_malformed_database_url_is_a_config_error() -> None:
    with pytest.raises(mf.ConfigError, match="invalid database URL 'not a url'"):
        Database("not a url")
