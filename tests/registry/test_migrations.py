"""Schema migrations: old registries open in new releases; newer ones are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

import modelfleet as mf
from modelfleet.db import (
    create_engines,
    current_revision,
    head_revision,
    upgrade_schema,
)
from modelfleet.registry import Registry
from tests.conftest import make_settings


def test_opening_an_empty_database_creates_the_newest_schema(db_url: str, tmp_path: Path) -> None:
    with Registry.open(make_settings(tmp_path / "home", db_url=db_url)):
        pass
    read, _ = create_engines(db_url)
    assert current_revision(read) == head_revision()
    read.dispose()


def test_registry_written_at_the_first_revision_upgrades_with_data(
    db_url: str, tmp_path: Path
) -> None:
    read, write = create_engines(db_url)
    upgrade_schema(write, db_url, target="0001")
    # A version written by a release whose newest schema was 0001, row by row.
    with write.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, latest_version, created_at) "
                "VALUES (1, 'legacy', 1, '2026-01-01 00:00:00+00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO versions (id, model_id, version, framework, framework_version, "
                "task, variant, signature, metrics, params, tags, lineage, environment, "
                "verification, created_at, created_by) VALUES (1, 1, 1, 'onnx', '1.17', "
                "'other', 'fp32', :sig, '{\"mae\": 0.5}', '{}', '{}', '{}', '{}', NULL, "
                "'2026-01-01 00:00:00+00:00', 'alice')"
            ),
            {"sig": '{"inputs": [{"name": "X", "dtype": "float32", "shape": [null, 3]}]}'},
        )
    read.dispose()
    with Registry.open(make_settings(tmp_path / "home", db_url=db_url)) as reg:
        legacy = reg.get("legacy:1")
        assert legacy.metrics == {"mae": 0.5}
        assert legacy.created_by == "alice"
        assert reg.get("legacy").signature.inputs[0].shape == (None, 3)
    read, _ = create_engines(db_url)
    assert current_revision(read) == head_revision()
    read.dispose()


def test_database_from_a_newer_release_is_refused(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", db_url=db_url)
    Registry.open(settings).close()
    read, write = create_engines(db_url)
    with write.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    read.dispose()
    with pytest.raises(mf.SchemaVersionError, match="upgrade modelfleet"):
        Registry.open(settings)


def test_unreachable_database_is_explained(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", db_url="postgresql://nobody@127.0.0.1:1/x")
    with pytest.raises(mf.RegistryError, match=r"cannot open the registry database .*:1/x"):
        Registry.open(settings)


def test_bad_database_url_is_explained(tmp_path: Path) -> None:
    with pytest.raises(mf.ConfigError, match="unsupported database URL"):
        Registry.open(make_settings(tmp_path / "home", db_url="oracle+nothing://x/y"))
