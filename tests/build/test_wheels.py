"""The image's wheels: the serve extra at the tested versions, enough to start, errors explained."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelfleet.build.wheels import (
    RUNTIME_CORE,
    STATE_DRIVERS,
    resolve_wheels,
    runtime_requirements,
)
from modelfleet.errors import BuildError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _closure(roots: set[str]) -> set[str]:
    """Canonical names of ``roots`` and everything they require when installed here."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_runtime_is_the_serve_extra_plus_the_core_pinned_to_what_runs_here() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    serve = [Requirement(line) for line in project["optional-dependencies"]["serve"]]
    expected = {
        canonicalize_name(r.name) for r in serve if r.marker is None or r.marker.evaluate()
    } | {canonicalize_name(name) for name in (*RUNTIME_CORE, *STATE_DRIVERS)}
    pinned = [Requirement(line) for line in runtime_requirements()]
    assert {canonicalize_name(r.name) for r in pinned} == expected
    ranges = {canonicalize_name(r.name): r.specifier for r in serve}
    for requirement in pinned:
        (spec,) = requirement.specifier
        installed = importlib.metadata.version(requirement.name)
        assert spec.operator == "=="
        assert spec.version == installed
        allowed = ranges.get(canonicalize_name(requirement.name))
        if allowed is not None:
            assert allowed.contains(installed, prereleases=True)
    for registry_only in ("sqlalchemy", "typer", "rich", "alembic", "fsspec"):
        assert registry_only not in {canonicalize_name(r.name) for r in pinned}


# Run in a fresh interpreter: importing a distribution outside the image's set fails as
# it would in the image, where those distributions are not installed.
_IMPORT_GUARD = """
import importlib.abc, importlib.metadata, sys
allowed = set(sys.argv[1].split(","))
owners = importlib.metadata.packages_distributions()

class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = {d.lower().replace("_", "-") for d in owners.get(top, [])}
        if dists and top != "modelfleet" and not dists & allowed:
            raise ModuleNotFoundError(f"{top} (from {sorted(dists)}) is not in the image")
        return None

sys.meta_path.insert(0, Guard())
import pathlib
import modelfleet.serving.__main__
from modelfleet.serving.settings import load_serve_config
config = load_serve_config(pathlib.Path(sys.argv[2]))
print(config.models[0].name)
"""


def test_the_image_packages_are_enough_to_start_the_server() -> None:
    allowed = _closure({Requirement(line).name for line in runtime_requirements()})
    baked = Path(__file__).parent / "golden" / "serve.yaml"
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_GUARD, ",".join(sorted(allowed)), str(baked)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "adder"


def test_an_unreachable_package_index_is_explained_and_leaves_no_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip reads its configuration from the environment: point it at a closed loopback port.
    for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    dest, cache = tmp_path / "wheels", tmp_path / "cache"
    with pytest.raises(BuildError) as caught:
        resolve_wheels(dest, cache)
    message = str(caught.value)
    assert message.startswith(("building the wheel failed", "downloading the modelfleet wheel"))
    assert "127.0.0.1:9" in message  # pip's own lines say where it looked
    assert caught.value.hint == "check the network to the package index, or retry"
    assert list(dest.iterdir()) == []
    assert not list(cache.glob("resolved-*"))
    assert not list(cache.rglob("*.whl"))
