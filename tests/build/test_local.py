"""Running an image locally: hardened, on loopback, cleaned up, and failures explained.

The images here are the local base with a different command (``podman commit``): no build.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from modelfleet.build.context import LOCAL_BASE
from modelfleet.build.engines import CliEngine
from modelfleet.build.local import run_container
from modelfleet.errors import BuildError

pytestmark = pytest.mark.podman

READY_SERVER = """
import http.server, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", 8080), Ready).serve_forever()
"""

NEVER_READY = """
import signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("loading model: graph file is missing", flush=True)
signal.pause()
"""


def _podman() -> str:
    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman is not installed on this machine")
    return binary


def _image(script: str) -> Iterator[str]:
    """An image of the local base whose command runs ``script``; removed afterwards."""
    podman = _podman()
    if subprocess.run([podman, "image", "exists", LOCAL_BASE], check=False).returncode != 0:
        from modelfleet.build.baseimage import make_base_image

        make_base_image(CliEngine("podman", podman), tag=LOCAL_BASE)
    tag = f"localhost/modelfleet-test/probe-{uuid.uuid4().hex[:8]}:1"
    created = subprocess.run(
        [podman, "create", LOCAL_BASE], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        command = json.dumps(["/usr/bin/python3", "-c", script])
        subprocess.run(
            [podman, "commit", "-q", "--change", f"CMD {command}", created, tag],
            capture_output=True,
            check=True,
        )
    finally:
        subprocess.run([podman, "rm", "-f", created], capture_output=True, check=False)
    yield tag
    subprocess.run([podman, "rmi", "-f", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def ready_image() -> Iterator[str]:
    yield from _image(READY_SERVER)


@pytest.fixture(scope="module")
def stuck_image() -> Iterator[str]:
    yield from _image(NEVER_READY)


def _containers_of(tag: str) -> list[str]:
    listed = subprocess.run(
        [_podman(), "ps", "-a", "-q", "--filter", f"ancestor={tag}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def _wait_gone(tag: str) -> list[str]:
    deadline = time.monotonic() + 15
    while (left := _containers_of(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_container_runs_hardened_on_loopback_and_is_removed(ready_image: str) -> None:
    port = _free_port()
    with run_container("podman", ready_image, port=port, timeout=30) as container:
        assert container.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{container.url}/v2/health/ready", timeout=5).status_code == 200
        running = _containers_of(ready_image)
        assert len(running) == 1
        assert container.container_id.startswith(running[0])
        published = subprocess.run(
            [_podman(), "port", container.container_id],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert published == ["8080/tcp", "->", f"127.0.0.1:{port}"]  # not on every interface
        root_write = container.exec("touch", "/opt/written")
        assert root_write.returncode != 0
        assert "Read-only file system" in root_write.stderr
        assert container.exec("touch", "/tmp/written").returncode == 0
        mounts = container.exec("cat", "/proc/mounts").stdout.splitlines()
        assert any(line.split()[1:3] == ["/tmp", "tmpfs"] for line in mounts)
        status = dict(
            line.split(":\t", 1)
            for line in container.exec("cat", "/proc/self/status").stdout.splitlines()
            if ":\t" in line
        )
        assert int(status["CapEff"], 16) == 0  # every capability dropped
        assert status["NoNewPrivs"].strip() == "1"
        container_id = container.container_id
    assert _wait_gone(ready_image) == []  # stopped and removed (--rm)
    after = subprocess.run(
        [_podman(), "container", "exists", container_id], capture_output=True, check=False
    )
    assert after.returncode == 1


def test_a_container_that_never_gets_ready_shows_its_log_and_is_removed(
    stuck_image: str,
) -> None:
    with pytest.raises(BuildError) as caught, run_container("podman", stuck_image, timeout=2):
        pytest.fail("the container is not ready; the body must not run")
    message = str(caught.value)
    assert message.startswith("the container did not become ready within 2 s (")
    assert "loading model: graph file is missing" in message
    assert _wait_gone(stuck_image) == []


def test_an_image_that_was_never_built_names_the_build_command() -> None:
    _podman()
    tag = f"localhost/modelfleet/never-built-{uuid.uuid4().hex[:8]}:1-qa"
    with pytest.raises(BuildError) as caught, run_container("podman", tag, timeout=5):
        pytest.fail("nothing can run")
    assert f"podman could not start {tag}" in str(caught.value)
    assert caught.value.hint == f"build it first: modelfleet build REF --env ENV (tag {tag})"


def test_an_engine_that_is_not_installed_is_named() -> None:
    with pytest.raises(BuildError) as caught, run_container("nerdctl-missing", "localhost/x:1"):
        pytest.fail("nothing can run")
    assert str(caught.value).startswith("nerdctl-missing is not installed")
    assert caught.value.hint == "install podman, or use docker"
