"""Wheels for the image, resolved on the host at the host's exact versions.

An image runs ``python -m modelfleet.serving``, which imports only the serving stack: the
``serve`` extra plus the few base packages the server uses (numpy, pydantic, settings,
YAML, orjson). The registry and CLI dependencies (SQLAlchemy, typer, rich, …) stay out;
modelfleet itself is installed without dependencies and the runtime set from
``runtime.txt``. The build then installs from these files only (``--no-index``), so it needs
no network and gets exactly what was tested here. Downloads are cached under the home.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from modelfleet import __version__
from modelfleet.errors import BuildError

logger = logging.getLogger(__name__)


def _pip(args: list[str], *, what: str) -> None:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise BuildError(
            f"{what} failed:\n{tail}", hint="check the network to the package index, or retry"
        )


def _source_tree() -> Path | None:
    """The project folder when modelfleet is installed from source (editable or path)."""
    try:
        raw = importlib.metadata.distribution("modelfleet").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    url = json.loads(raw).get("url", "")
    if url.startswith("file://"):
        path = Path(url.removeprefix("file://"))
        if (path / "pyproject.toml").is_file():
            return path
    return None


def _constraints(path: Path) -> None:
    """Pin every distribution installed here (the versions the tests ran against)."""
    pins = sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != "modelfleet"
    )
    path.write_text("\n".join(pins) + "\n")


def modelfleet_wheel(dest: Path) -> Path:
    """A wheel of the installed modelfleet: built from the source tree, or downloaded."""
    dest.mkdir(parents=True, exist_ok=True)
    source = _source_tree()
    with tempfile.TemporaryDirectory(prefix="modelfleet-wheel-") as tmp:
        if source is not None:
            # Build from a clean copy: setuptools would otherwise reuse (and leave) a build/
            # folder in the source tree, with whatever stale files it holds.
            tree = Path(tmp) / "src-tree"
            shutil.copytree(
                source / "src",
                tree / "src",
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
            for name in ("pyproject.toml", "README.md"):
                shutil.copyfile(source / name, tree / name)
            _pip(["wheel", "--no-deps", "-q", "-w", tmp, str(tree)], what="building the wheel")
        else:
            _pip(
                ["download", "--no-deps", "-q", "-d", tmp, f"modelfleet=={__version__}"],
                what="downloading the modelfleet wheel",
            )
        built = next(Path(tmp).glob("modelfleet-*.whl"), None)
        if built is None:
            raise BuildError("no modelfleet wheel was produced")
        target = dest / built.name
        shutil.copyfile(built, target)
        return target


# Base dependencies the serving path imports; the rest of the base install is for the
# registry and the CLI, which an image does not run.
RUNTIME_CORE = ("numpy", "pydantic", "pydantic-settings", "PyYAML", "orjson")
# The Redis client (pure Python, ~1 MB) so pods can share their predictions store through
# MODELFLEET_STATE_URL=redis://…; PostgreSQL state needs SQLAlchemy, Alembic and libpq,
# which the lean image leaves out.
# redis asks for async-timeout only below Python 3.11.3: the image's Debian bookworm python3
# is 3.11.2, while pip resolves markers for this machine's Python, so it is named here.
STATE_DRIVERS = ("redis", "async-timeout")


def runtime_requirements() -> list[str]:
    """The image's top-level requirements: the serve extra, the runtime core and the
    shared-state driver, pinned."""
    names = [*RUNTIME_CORE, *STATE_DRIVERS]
    for requirement in importlib.metadata.requires("modelfleet") or []:
        if 'extra == "serve"' in requirement or "extra == 'serve'" in requirement:
            spec = requirement.split(";")[0].strip()
            names.append(spec.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip())
    return sorted({f"{name}=={importlib.metadata.version(name)}" for name in names})


def download_wheels(requirements: list[str], cache: Path, *, what: str) -> list[Path]:
    """Wheels of ``requirements`` (and of pip), at this machine's versions, cached by the set.

    A set is downloaded once into ``cache/resolved-<key>``, where the key covers the
    requirements and every version installed here; an interrupted download is redone.
    """
    cache.mkdir(parents=True, exist_ok=True)
    constraints = cache / "constraints.txt"
    _constraints(constraints)
    pip_version = importlib.metadata.version("pip")
    key = hashlib.sha256(constraints.read_bytes() + "\n".join(requirements).encode())
    resolved = cache / f"resolved-{key.hexdigest()[:16]}"
    if not (resolved / ".complete").exists():
        shutil.rmtree(resolved, ignore_errors=True)
        resolved.mkdir()
        _pip(
            [
                "download",
                "-q",
                "--only-binary=:all:",
                "-d",
                str(resolved),
                "-c",
                str(constraints),
                *requirements,
                f"pip=={pip_version}",
            ],
            what=what,
        )
        (resolved / ".complete").write_text("ok\n")
    return sorted(resolved.glob("*.whl"))


def resolve_wheels(dest: Path, cache: Path) -> list[Path]:
    """modelfleet's wheel, the runtime set's wheels and pip's, copied into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    own = modelfleet_wheel(cache / "own")
    runtime = runtime_requirements()
    resolved = download_wheels(runtime, cache, what="resolving the serving wheels")
    (dest / "runtime.txt").write_text("\n".join(runtime) + "\n")
    shutil.copyfile(own, dest / own.name)
    wheels = [dest / own.name]
    for wheel in resolved:
        target = dest / wheel.name
        if not target.exists():
            shutil.copyfile(wheel, target)
        wheels.append(target)
    logger.info("resolved %d wheels for modelfleet[serve]", len(wheels))
    return wheels
