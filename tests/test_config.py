"""Settings precedence: flag > env > config file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet import ConfigError, load_settings


def test_defaults_live_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.db_url == f"sqlite:///{tmp_path}/registry.db"
    assert settings.artifacts == str(tmp_path / "artifacts")


def test_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "modelfleet.yaml"
    config.write_text("home: /from/file\nartifacts: /file/artifacts\nfreeze:\n  atol: 0.5\n")
    monkeypatch.setenv("MODELFLEET_CONFIG", str(config))
    monkeypatch.setenv("MODELFLEET_ARTIFACTS", "/env/artifacts")
    monkeypatch.setenv("MODELFLEET_FREEZE__MIN_AGREEMENT", "0.5")
    settings = load_settings(home=tmp_path / "flag")
    assert settings.home == tmp_path / "flag"
    assert settings.artifacts == "/env/artifacts"
    assert settings.freeze.atol == 0.5
    assert settings.freeze.min_agreement == 0.5


def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_FREEZE__ATOL", "-1")
    with pytest.raises(ConfigError, match=r"freeze\.atol"):
        load_settings()


def test_missing_config_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_CONFIG", "/nowhere/modelfleet.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()
