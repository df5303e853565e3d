"""``modelfleet --version`` says which release this is, and does nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet import __version__
from modelfleet.cli import main


def test_version_prints_the_release_and_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"modelfleet {__version__}\n"
    # Eager: a command after it is not run (no registry is created).
    assert main(["--version", "models"]) == 0
    assert not (tmp_path / "home").exists()


def test_version_from_the_module_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelfleet", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"modelfleet {__version__}"
