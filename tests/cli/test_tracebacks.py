"""What the CLI prints: a bad value typed on the command line ends in one 'error:' line and
exit 1, never a traceback; ``serve`` shows the server's own notices, each once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.cli import main
from tests.servers import free_port, wait_for_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELFLEET_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "400")
    return home


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_an_unknown_task_lists_the_tasks_and_registers_nothing(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(capsys, "register", str(onnx_file), "--name", "adder", "--task", "bogus")
    assert code == 1
    line = one_error_line(err)
    assert "'bogus'" in line and "classification, regression, other" in line
    code, _ = run(capsys, "versions", "adder")
    assert code == 1  # nothing was registered


@pytest.mark.parametrize(
    ("flags", "named", "valid"),
    [
        (("--to", "int4"), "'int4'", "fp16, int8"),
        (("--to", "int8", "--method", "bogus"), "'bogus'", "dynamic, static"),
    ],
    ids=["variant", "method"],
)
def test_an_unknown_quantize_choice_lists_the_valid_ones(
    home: Path,
    onnx_file: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    named: str,
    valid: str,
) -> None:
    assert run(capsys, "register", str(onnx_file), "--name", "adder")[0] == 0
    code, err = run(capsys, "quantize", "adder:1", *flags)
    assert code == 1
    line = one_error_line(err)
    assert named in line and valid in line
    code, _ = run(capsys, "show", "adder:2")
    assert code == 1  # no version was created


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--variant", "int4"), ("--variant", "'int4'", "fp32", "fp16", "int8")),
        (("--port", "99999"), ("--port", "99999", "0", "65535")),
        (("--workers", "0"), ("--workers", "1", "64")),
    ],
    ids=["variant", "port", "workers"],
)
def test_a_bad_serve_option_is_named_with_its_valid_range(
    home: Path,
    onnx_file: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    expected: tuple[str, ...],
) -> None:
    code, err = run(capsys, "serve", str(onnx_file), *flags)
    assert code == 1
    line = one_error_line(err)
    for text in expected:
        assert text in line


def test_reload_of_a_server_that_is_not_there_says_so(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, err = run(capsys, "reload", url)
    assert code == 1
    line = one_error_line(err)
    assert f"cannot reach {url}" in line and "check the URL" in line


def test_serve_shows_the_drain_and_each_load_once(home: Path, onnx_file: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelfleet", "serve", str(onnx_file), "--port", str(port)],
        env={**os.environ, "MODELFLEET_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "signal SIGTERM: draining before exit" in err  # the server's own INFO notice
    assert err.count("loaded sum version 1") == 1, err  # a hot-swap event, not doubled


def test_a_serve_config_that_is_not_utf8_is_named(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.yaml"
    config.write_bytes("models:\n  - ref: café\n".encode("latin-1"))  # saved by an old editor
    code, err = run(capsys, "serve", "--config", str(config))
    assert code == 1
    line = one_error_line(err)
    assert f"serve config {config} is not UTF-8 text" in line and "save it as UTF-8" in line
