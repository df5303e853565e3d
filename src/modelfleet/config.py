"""Settings: one place for every default, read from flags, env (MODELFLEET_*) and a YAML file.

Precedence is CLI flag > environment > config file (``MODELFLEET_CONFIG``) > default. Load the
settings once at the edge (CLI, server start) and pass them down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from modelfleet.errors import ConfigError


class FreezeSettings(BaseModel):
    """How closely a frozen ONNX graph must reproduce its source model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    atol: float = Field(
        1e-4, gt=0, description="largest allowed absolute difference of any numeric output"
    )
    min_agreement: float = Field(
        0.999, ge=0, le=1, description="smallest allowed share of identical predicted labels"
    )
    opset: int = Field(17, ge=13, le=23, description="ONNX opset used by the converters")


class QuantizeSettings(BaseModel):
    """Defaults of `modelfleet quantize`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_drop: float = Field(
        0.01, ge=0, le=1, description="largest allowed drop of the metric after quantization"
    )
    latency_runs: int = Field(
        50, ge=3, le=10_000, description="timed runs per batch size when measuring latency"
    )


class Settings(BaseSettings):
    """Every modelfleet setting; env vars use the ``MODELFLEET_`` prefix and ``__`` for nesting."""

    model_config = SettingsConfigDict(
        env_prefix="MODELFLEET_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    home: Path = Field(
        default_factory=lambda: Path("~/.modelfleet").expanduser(),
        description="folder holding the default SQLite registry and artifact store",
    )
    db_url: str = Field(
        "", description="SQLAlchemy URL of the metadata store; empty: SQLite under home"
    )
    artifacts: str = Field(
        "", description="artifact store: a folder or an fsspec URL (s3://bucket/x); empty: home"
    )
    artifacts_options: dict[str, Any] = Field(
        default_factory=dict,
        description='fsspec storage options, e.g. {"endpoint_url": "http://minio:9000"}',
    )
    user: str | None = Field(None, description="name recorded in the audit trail; default: login")
    freeze: FreezeSettings = Field(default_factory=FreezeSettings)
    quantize: QuantizeSettings = Field(default_factory=QuantizeSettings)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        home = self.home.expanduser()
        object.__setattr__(self, "home", home)
        if not self.db_url:
            object.__setattr__(self, "db_url", f"sqlite:///{home / 'registry.db'}")
        if not self.artifacts:
            object.__setattr__(self, "artifacts", str(home / "artifacts"))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("MODELFLEET_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from flags (``overrides``), env and the config file.

    Flags whose value is None are ignored, so CLI options can be passed through unchanged.
    """
    config_file = os.environ.get("MODELFLEET_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(
            f"config file {config_file} (from MODELFLEET_CONFIG) does not exist",
            hint="create it or unset MODELFLEET_CONFIG",
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}", hint="fix the MODELFLEET_* variables or config file"
        ) from exc
