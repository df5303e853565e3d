"""Image engines: podman, docker and buildah behind one small interface, called with argv lists."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelfleet.errors import BuildError

logger = logging.getLogger(__name__)

ENGINES = ("podman", "docker", "buildah")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A built image: its tag, content digest and size in bytes."""

    tag: str
    digest: str
    size: int


class ImageEngine(Protocol):
    """Builds and inspects images."""

    name: str

    def build(self, context: Path, tag: str) -> ImageInfo:
        """Build ``context`` (its Containerfile) and tag the image."""
        ...

    def inspect(self, tag: str) -> ImageInfo:
        """Digest and size of a local image."""
        ...


def _run(argv: list[str], *, what: str, timeout: float = 1800) -> str:
    logger.debug("running %s", " ".join(argv))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what} timed out after {timeout:.0f} s: {' '.join(argv[:3])}") from exc
    except OSError as exc:
        raise BuildError(f"{what} could not start {argv[0]}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


@dataclass
class CliEngine:
    """An engine driven through its command line (podman, docker, buildah)."""

    name: str
    binary: str

    def build(self, context: Path, tag: str) -> ImageInfo:
        """Build with the Docker image format, so HEALTHCHECK is kept."""
        if self.name == "buildah":
            argv = [self.binary, "bud", "--format", "docker", "--layers", "-t", tag]
        elif self.name == "podman":
            argv = [self.binary, "build", "--format", "docker", "--layers", "-t", tag]
        else:
            argv = [self.binary, "build", "-t", tag]
        argv += ["-f", str(context / "Containerfile"), "--network", "none", str(context)]
        _run(argv, what=f"{self.name} build")
        return self.inspect(tag)

    def inspect(self, tag: str) -> ImageInfo:
        """Read digest and size from ``image inspect``."""
        if self.name == "buildah":
            command = [self.binary, "inspect", "--type", "image"]
        else:
            command = [self.binary, "image", "inspect"]
        data = json.loads(_run([*command, tag], what=f"{self.name} inspect"))
        record = data[0] if isinstance(data, list) else data
        digest = record.get("Digest") or record.get("FromImageDigest") or record.get("Id", "")
        size = int(record.get("Size") or record.get("VirtualSize") or _manifest_size(record))
        return ImageInfo(tag=tag, digest=str(digest), size=size)


def _manifest_size(record: dict[str, Any]) -> int:
    """Layers plus config as the image's manifest lists them (buildah reports no size).

    Images built locally keep their layers uncompressed, so this matches the size podman
    shows for them; for a pulled image it is the compressed size of its layers.
    """
    try:
        manifest = json.loads(record.get("Manifest") or "{}")
        blobs = [*manifest.get("layers", []), manifest.get("config", {})]
        return sum(int(blob.get("size", 0)) for blob in blobs)
    except (TypeError, ValueError, AttributeError):
        logger.debug("no readable manifest to size the image from")
        return 0


def find_engine(choice: str = "auto") -> ImageEngine | None:
    """The engine to use: ``auto`` takes podman, then docker, then buildah; None if absent.

    Docker is usable only with a running daemon, so its client alone does not count.
    """
    names = ENGINES if choice == "auto" else (choice,)
    if choice not in (*ENGINES, "auto", "none"):
        raise BuildError(
            f"unknown engine {choice!r}", hint="use auto, podman, docker, buildah or none"
        )
    if choice == "none":
        return None
    for name in names:
        binary = shutil.which(name)
        if binary is None:
            continue
        if name == "docker" and not _docker_daemon(binary):
            logger.info("docker client found but no daemon answers; skipping it")
            continue
        return CliEngine(name, binary)
    if choice != "auto":
        raise BuildError(
            f"the {choice} engine is not available on this machine",
            hint=f"install {choice}, or use --engine auto / none (the context is still written)",
        )
    return None


def _docker_daemon(binary: str) -> bool:
    try:
        result = subprocess.run(
            [binary, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())
