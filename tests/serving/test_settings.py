"""The serve config file: defaults, every section read, and clear ConfigErrors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelfleet.errors import ConfigError
from modelfleet.serving.settings import (
    ModelConfig,
    ServeConfig,
    ServerConfig,
    load_serve_config,
)

DIGEST = "ab" * 32


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


def test_no_file_and_an_empty_file_give_the_defaults(tmp_path: Path) -> None:
    assert load_serve_config(None) == ServeConfig()
    assert load_serve_config(_write(tmp_path, "")) == ServeConfig()
    assert load_serve_config(_write(tmp_path, "# only a comment\n")) == ServeConfig()


def test_a_full_file_is_read_into_every_section(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
server:
  port: 9000
  max_body_bytes: 2048
  tokens: [{{name: ci, sha256: "{DIGEST}", scopes: [infer, admin]}}]
  open_paths: [health]
monitoring: {{log_sample: 0.5}}
models:
  - ref: churn@prod
    name: churn
    variant: int8
    batching: {{max_batch_rows: 16, max_wait_ms: 2}}
    scheduler: {{max_queued_requests: 10, default_timeout_ms: 250}}
    cache: {{backend: "redis://127.0.0.1:6379/0", threshold: 0.9}}
  - ref: ./model.onnx
    name: local
    metrics: {{accuracy: 0.99}}
""",
    )
    config = load_serve_config(path)
    assert config.server.port == 9000
    assert config.server.tokens[0].scopes == ("infer", "admin")
    assert config.server.open_paths == ("health",)
    assert config.monitoring.log_sample == 0.5
    churn, local = config.models
    assert (churn.ref, churn.variant, churn.batching.max_batch_rows) == ("churn@prod", "int8", 16)
    assert churn.scheduler.default_timeout_ms == 250
    assert churn.cache.backend.startswith("redis://")
    assert churn.batching.enabled  # unset keys keep their defaults
    assert local.metrics == {"accuracy": 0.99}


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("server: {prot: 8080}", "server.prot", "Extra inputs are not permitted"),
        ("models: [{ref: a, batching: {size: 4}}]", "models.0.batching.size", "Extra inputs"),
        ("surprise: 1", "surprise", "Extra inputs are not permitted"),
        ("server: {port: 70000}", "server.port", "less than or equal to 65535"),
        ("server: {max_body_bytes: 10}", "server.max_body_bytes", "greater than or equal to 1024"),
        ("models: [{ref: a, variant: int4}]", "models.0.variant", "'fp32', 'fp16' or 'int8'"),
        ("models: [{name: a}]", "models.0.ref", "Field required"),
        ("models: [{ref: a, threads: 0}]", "models.0.threads", "greater than or equal to 1"),
        (
            "models: [{ref: a, scheduler: {retry_after_s: 0}}]",
            "models.0.scheduler.retry_after_s",
            "greater than 0",
        ),
        (
            "models: [{ref: a, batching: {max_wait_ms: 5000}}]",
            "models.0.batching.max_wait_ms",
            "less than or equal to 1000",
        ),
        ("monitoring: {log_sample: 2}", "monitoring.log_sample", "less than or equal to 1"),
        (
            "server: {tokens: [{name: t, sha256: not-a-digest}]}",
            "server.tokens.0.sha256",
            "should match pattern",
        ),
        (
            f"server: {{tokens: [{{name: t, sha256: '{DIGEST}', scopes: [root]}}]}}",
            "server.tokens.0.scopes.0",
            "'infer', 'feedback' or 'admin'",
        ),
        ("server: {open_paths: [admin]}", "server.open_paths.0", "'health', 'metrics' or 'docs'"),
        (
            "models: [{ref: a, name: x}, {ref: b, name: x}]",
            "models",
            "served names must be unique",
        ),
        ("- a\n- b\n", "", "valid dictionary"),
    ],
)
def test_bad_values_name_the_field_and_the_rule(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    message = str(info.value)
    assert message.startswith(f"invalid serve config {path}: {where}: ")
    assert what in message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "server: {port: -1, workers: 0}\nmodels: [{ref: a, threads: 99}]")
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    problems = str(info.value).split(": ", 1)[1].split("; ")
    assert [p.split(":")[0] for p in problems] == [
        "server.port",
        "server.workers",
        "models.0.threads",
    ]


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    path = _write(tmp_path, "server:\n  port: 8080\n\tworkers: 2\n")
    with pytest.raises(ConfigError) as info:
        load_serve_config(path)
    assert f"serve config {path} is not valid YAML" in str(info.value)
    assert "line 3" in str(info.value)


def test_a_missing_file_points_at_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_serve_config(tmp_path / "nope.yaml")
    assert (
        str(info.value) == f"serve config {tmp_path / 'nope.yaml'} does not exist; check --config"
    )
    assert info.value.hint == "check --config"


def test_sections_are_frozen_and_reject_unknown_fields_in_code_too() -> None:
    config = ServeConfig(models=(ModelConfig(ref="a"),))
    with pytest.raises(ValidationError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        ServerConfig(hots="0.0.0.0")  # type: ignore[call-arg]
    # Unnamed models take their name from the registry, so only explicit names are compared.
    assert len(ServeConfig(models=(ModelConfig(ref="a"), ModelConfig(ref="b"))).models) == 2
