"""The serve, reload and token commands, and what the server process imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import modelfleet as mf
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.registry import Registry
from tests.models import sum_graph
from tests.servers import free_port, wait_for_port


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "MODELFLEET_HOME": str(settings.home)}


def test_serve_without_models_is_a_clear_error(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    assert main(["serve"]) == 1
    assert "nothing to serve" in capsys.readouterr().err


def test_serve_unknown_model_fails_at_startup(settings: Settings, registry: Registry) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet", "serve", "ghost", "--port", str(free_port())],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "model 'ghost' not found" in result.stderr


def test_bad_serve_config_names_the_field(
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    config = tmp_path / "serve.yaml"
    config.write_text("models:\n  - ref: adder\n    batching: {max_batch_rows: 0}\n")
    assert main(["serve", "--config", str(config)]) == 1
    assert "batching.max_batch_rows" in capsys.readouterr().err


def test_reload_and_token_commands(
    settings: Settings, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    mf.promote("adder:1", to="prod", registry=registry)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "serve", "adder@prod", "--port", str(port)],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        mf.register(sum_graph(), name="adder", registry=registry)
        mf.promote("adder:2", to="prod", registry=registry)
        assert main(["reload", url, "adder", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status[0]["version"] == "2"
        assert httpx.get(f"{url}/v2/models/adder").json()["versions"] == ["2"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert main(["token", "--name", "ci", "--scopes", "infer+admin"]) == 0
    out = capsys.readouterr().out
    assert "MODELFLEET_SERVE_TOKENS=ci:" in out


def test_the_server_imports_no_training_stack(settings: Settings, registry: Registry) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    script = """
import asyncio, sys
from modelfleet.config import load_settings
from modelfleet.serving import build_app, ServeConfig, ModelConfig

async def main():
    app = build_app(ServeConfig(models=(ModelConfig(ref="adder"),)), load_settings())
    await app.startup()
    await app.shutdown()

asyncio.run(main())
heavy = {"sklearn", "torch", "kubernetes", "skl2onnx", "skops", "onnx", "pandas"}
print(sorted(heavy & set(sys.modules)))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
