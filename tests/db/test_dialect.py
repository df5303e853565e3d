"""Dialect helpers on real SQLite and PostgreSQL: insert-or-ignore and timezone-aware reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from modelfleet.db import Database, ModelRow, StepCacheRow, as_utc, insert_or_ignore

WHEN = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    with Database(db_url) as db:
        yield db


def _entry(sha: str) -> dict[str, object]:
    return {
        "key": "k" * 64,
        "step": "train",
        "artifact_key": f"sha256/{sha}",
        "sha256": sha,
        "media_type": "application/json",
        "created_at": WHEN,
    }


def test_insert_or_ignore_writes_once_and_the_first_row_stands(database: Database) -> None:
    with database.writing() as session:
        assert insert_or_ignore(session, StepCacheRow, **_entry("a" * 64)) is True
    with database.writing() as session:
        assert insert_or_ignore(session, StepCacheRow, **_entry("b" * 64)) is False
    with database.reading() as session:
        stored = session.scalars(select(StepCacheRow.sha256)).all()
    assert stored == ["a" * 64]


def test_insert_or_ignore_on_a_unique_column_keeps_the_transaction_usable(
    database: Database,
) -> None:
    with database.writing() as session:
        insert_or_ignore(session, ModelRow, name="churn", latest_version=0, created_at=WHEN)
        insert_or_ignore(session, ModelRow, name="churn", latest_version=7, created_at=WHEN)
        # A duplicate must not abort the transaction: later statements in it still run.
        insert_or_ignore(session, ModelRow, name="fraud", latest_version=0, created_at=WHEN)
    with database.reading() as session:
        rows = session.execute(
            select(ModelRow.name, ModelRow.latest_version).order_by(ModelRow.name)
        ).all()
    assert [tuple(r) for r in rows] == [("churn", 0), ("fraud", 0)]


def test_insert_or_ignore_is_rolled_back_with_its_transaction(database: Database) -> None:
    def register_then_fail() -> None:
        with database.writing() as session:
            insert_or_ignore(session, ModelRow, name="ghost", latest_version=0, created_at=WHEN)
            raise RuntimeError("the caller's next step failed")

    with pytest.raises(RuntimeError):
        register_then_fail()
    with database.reading() as session:
        assert session.scalars(select(ModelRow.name)).all() == []


def test_utc_timestamps_read_back_aware_and_equal(database: Database) -> None:
    with database.writing() as session:
        insert_or_ignore(session, ModelRow, name="churn", latest_version=0, created_at=WHEN)
    with database.reading() as session:
        raw = session.scalar(select(ModelRow.created_at))
    assert raw is not None
    read = as_utc(raw)
    assert read == WHEN  # a naive datetime never equals an aware one
    assert read.utcoffset() == timedelta(0)


def test_as_utc_reads_a_naive_datetime_as_utc() -> None:
    naive = datetime(2026, 11, 29, 12, 30)
    assert as_utc(naive) == WHEN
    assert as_utc(naive).tzinfo is UTC


def test_as_utc_leaves_aware_datetimes_and_none_alone() -> None:
    paris = datetime(2026, 11, 29, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(paris) is paris
    assert as_utc(None) is None
