"""The registry hands out the database its metadata lives in, for tables kept beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import modelfleet as mf
from modelfleet.db import ModelRow
from modelfleet.registry import FsspecArtifactStore, Registry
from tests.conftest import make_settings
from tests.models import sum_graph


def test_the_registry_database_holds_what_the_registry_wrote(db_url: str, tmp_path: Path) -> None:
    with Registry.open(make_settings(tmp_path / "home", db_url=db_url)) as reg:
        mf.register(sum_graph(), name="adder", registry=reg)
        assert reg.database.url == db_url
        with reg.database.reading() as session:
            names = session.scalars(select(ModelRow.name)).all()
    assert names == ["adder"]


class _NotSqlStore:
    """Stands for a metadata store kept somewhere other than a SQL database."""


def test_a_registry_without_a_sql_store_says_it_has_no_database(tmp_path: Path) -> None:
    reg = Registry(_NotSqlStore(), FsspecArtifactStore(str(tmp_path)), user="alice")
    with pytest.raises(mf.RegistryError, match="_NotSqlStore, not in a SQL database"):
        _ = reg.database
