"""Defects a test-depth pass found, kept fixed.

A damaged artifact is repaired by registering again; a malformed number in a requirement is
an invalid requirement, not a crash; an in-memory SQLite database keeps its schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.db import Database, ModelRow
from modelfleet.refs import Stage
from modelfleet.registry import ArtifactPayload, Registry, Role, parse_requirements
from tests.registry.conftest import DraftFactory


def test_registering_the_same_bytes_again_repairs_a_corrupted_artifact(
    registry: Registry, settings: Settings, make_draft: DraftFactory
) -> None:
    payload = ArtifactPayload(Role.SOURCE, b"weights", "application/octet-stream")
    first = registry.create_version(make_draft(), [payload])
    (Path(settings.artifacts) / first.artifacts[0].key).write_bytes(b"rot")
    # The error's hint says: "restore the file from a backup or register the model again".
    again = registry.create_version(make_draft(), [payload])
    assert registry.read_artifact(again, Role.SOURCE) == b"weights"


@pytest.mark.parametrize("text", ["accuracy>=0.9.1", "accuracy>=."])
def test_a_number_that_is_not_one_is_an_invalid_requirement(text: str) -> None:
    with pytest.raises(mf.ModelfleetError, match="invalid requirement"):
        parse_requirements([text])


@pytest.mark.parametrize(
    ("text", "threshold"), [("loss<1E-3", 1e-3), ("f1>=.5", 0.5), ("n==3", 3.0)]
)
def test_numbers_in_every_usual_spelling_are_read(text: str, threshold: float) -> None:
    (requirement,) = parse_requirements([text])
    assert requirement.threshold == threshold


def test_promote_with_a_malformed_number_is_explained(
    registry: Registry, make_draft: DraftFactory
) -> None:
    registry.create_version(make_draft(metrics={"accuracy": 0.95}), [])
    with pytest.raises(mf.ModelfleetError, match="invalid requirement"):
        registry.promote("churn:1", Stage.PROD, require=["accuracy>=0.9.1"])


def test_an_in_memory_sqlite_database_is_usable() -> None:
    with Database("sqlite:///:memory:") as db, db.reading() as session:
        assert session.scalars(select(ModelRow)).all() == []
