"""Shared fixtures: isolated settings, registries on SQLite/PostgreSQL, an S3 server, models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from modelfleet.config import Settings
from modelfleet.registry import Registry
from tests.servers import moto_server, postgres_server


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MODELFLEET_* setting of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("MODELFLEET_"):
            monkeypatch.delenv(key)


def make_settings(home: os.PathLike[str] | str, **extra: object) -> Settings:
    """Settings for a test: short latency measurements keep freezing fast."""
    return Settings(home=home, quantize={"latency_runs": 3}, **extra)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: os.PathLike[str]) -> Settings:
    """Settings with a private home (SQLite registry and local artifact folder)."""
    return make_settings(f"{tmp_path}/home")


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    """An open registry on the private home."""
    with Registry.open(settings) as reg:
        yield reg


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A private PostgreSQL server for the whole session."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database on the private server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        postgres_admin_url.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The metadata store URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on loopback."""
    with moto_server() as url:
        yield url


@pytest.fixture
def s3_settings(tmp_path: os.PathLike[str], s3_endpoint: str) -> Settings:
    """Settings whose artifact store is a fresh bucket on the S3 server."""
    import s3fs

    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    bucket = f"models-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return make_settings(
        f"{tmp_path}/home", artifacts=f"s3://{bucket}/store", artifacts_options=options
    )
