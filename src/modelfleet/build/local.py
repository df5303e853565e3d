"""Run a built image on this machine the way Kubernetes will: non-root, read-only, loopback."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from modelfleet.build.context import PORT
from modelfleet.errors import BuildError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunningContainer:
    """A container started by :func:`run_container`."""

    engine: str
    container_id: str
    url: str

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container."""
        binary = shutil.which(self.engine) or self.engine
        return subprocess.run(
            [binary, "exec", self.container_id, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        """The container's output so far."""
        binary = shutil.which(self.engine) or self.engine
        result = subprocess.run(
            [binary, "logs", self.container_id],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_container(
    engine: str, tag: str, *, port: int | None = None, timeout: float = 60
) -> Iterator[RunningContainer]:
    """Start ``tag`` hardened (read-only root, tmpfs /tmp, no capabilities), wait until ready."""
    binary = shutil.which(engine)
    if binary is None:
        raise BuildError(f"{engine} is not installed", hint="install podman, or use docker")
    host_port = port or _free_port()
    argv = [
        binary,
        "run",
        "-d",
        "--rm",
        "-p",
        f"127.0.0.1:{host_port}:{PORT}",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=64m,mode=1777",  # noqa: S108 - a tmpfs inside the container
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        tag,
    ]
    started = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if started.returncode != 0:
        raise BuildError(
            f"{engine} could not start {tag}: {started.stderr.strip()[-300:]}",
            hint=f"build it first: modelfleet build REF --env ENV (tag {tag})",
        )
    container = RunningContainer(engine, started.stdout.strip(), f"http://127.0.0.1:{host_port}")
    try:
        _wait_ready(container, timeout)
        yield container
    finally:
        subprocess.run(
            [binary, "stop", "-t", "10", container.container_id],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _wait_ready(container: RunningContainer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{container.url}/v2/health/ready", timeout=1)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise BuildError(
        f"the container did not become ready within {timeout:.0f} s ({last}); its log:\n"
        + "\n".join(container.logs().strip().splitlines()[-15:])
    )
