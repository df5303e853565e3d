"""Registry fixtures: a registry on each backend and version drafts that need no model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.registry import Registry, Task, VersionDraft
from modelfleet.signature import Signature, TensorSpec
from tests.conftest import make_settings

SIGNATURE = Signature(
    inputs=(TensorSpec(name="X", dtype="float32", shape=(None, 3)),),
    outputs=(TensorSpec(name="Y", dtype="float32", shape=(None, 1)),),
)

DraftFactory = Callable[..., VersionDraft]


@pytest.fixture
def sql_registry(db_url: str, tmp_path: Path) -> Iterator[Registry]:
    """A registry acting as 'alice', once on SQLite and once on PostgreSQL."""
    settings = make_settings(tmp_path / "home", db_url=db_url, user="alice")
    with Registry.open(settings) as reg:
        yield reg


@pytest.fixture
def make_draft() -> DraftFactory:
    """Build a version draft directly, so registry tests need no model to freeze."""

    def build(name: str = "churn", **fields: Any) -> VersionDraft:
        values: dict[str, Any] = {
            "name": name,
            "framework": "onnx",
            "framework_version": "1.17",
            "task": Task.CLASSIFICATION,
            "signature": SIGNATURE,
            "created_by": "alice",
        }
        values.update(fields)
        return VersionDraft(**values)

    return build
