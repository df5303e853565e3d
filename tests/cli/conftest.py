"""What the CLI tests share: a private home, a small ONNX file, and running a command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import sum_graph


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MODELFLEET_HOME; a wide console so tables and lines are not wrapped."""
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_QUANTIZE__LATENCY_RUNS", "3")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    """A graph that sums its inputs, saved as a file the CLI can register."""
    path = tmp_path / "sum.onnx"
    path.write_bytes(sum_graph().SerializeToString())
    return path
