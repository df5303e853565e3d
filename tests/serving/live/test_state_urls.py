"""One setting picks the predictions store; a URL that names none is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.errors import ConfigError
from modelfleet.serving.live import FeedbackStore, backend_of, open_store
from modelfleet.serving.settings import MonitoringConfig, StateConfig


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        (None, "sqlite"),
        ("sqlite:///tmp/x.db", "sqlite"),
        ("postgresql+psycopg://u:p@db/state", "postgresql"),
        ("postgres://db/state", "postgresql"),
        ("redis://cache:6379/0", "redis"),
        ("rediss://cache:6380/0", "redis"),
    ],
)
def test_each_url_names_its_backend(url: str | None, backend: str) -> None:
    assert backend_of(url) == backend


@pytest.mark.parametrize("url", ["mysql://u:hunter2@db/x", "state-db:5432", "http://u:hunter2@h/"])
def test_an_unknown_url_is_refused_with_the_password_hidden(url: str) -> None:
    with pytest.raises(ConfigError, match="names no known backend") as caught:
        backend_of(url)
    assert "hunter2" not in str(caught.value)
    assert "MODELFLEET_STATE_URL" in str(caught.value)


def test_a_sqlite_url_is_the_file_it_names(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "state.sqlite3"
    store = open_store(StateConfig(url=f"sqlite:///{path}"), MonitoringConfig(), tmp_path)
    try:
        assert isinstance(store, FeedbackStore)
        assert path.exists()
        assert not (tmp_path / "predictions.sqlite3").exists()
    finally:
        store.close()
