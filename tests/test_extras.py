"""The extras a user installs name what they promise (pyproject is the source of truth)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _extras() -> dict[str, set[str]]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return {name: {Requirement(r).name for r in reqs} for name, reqs in extras.items()}


def test_the_client_extra_carries_the_official_clients_and_dev_uses_it() -> None:
    extras = _extras()
    # What tests/serving/test_client.py drives the server with, unchanged.
    assert extras["client"] == {"tritonclient", "kserve"}
    assert "modelfleet" in extras["dev"]  # dev = modelfleet[client] + tools
    assert not extras["client"] & (extras["serve"] | extras["dev"] - {"modelfleet"})
