"""Connecting to an API server on loopback: discovery, and the versions objects are sent in.

The server here answers only the two discovery calls, as kube-apiserver does; applying
objects needs a real cluster and is covered by tests/e2e (make e2e).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelfleet.errors import DeployError
from modelfleet.kube import Cluster
from tests.kube.kubeconfigs import TOKEN, kubeconfig
from tests.servers import free_port


@dataclass
class Discovery:
    """What a small API server on loopback saw: the URL to reach it and each request."""

    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)


def _group(name: str, *versions: str) -> dict[str, object]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


# An older cluster: autoscaling and policy only in their beta versions.
GROUPS = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        _group("apps", "v1"),
        _group("autoscaling", "v2beta2", "v1"),
        _group("policy", "v1beta1"),
    ],
}
VERSION = {
    "major": "1",
    "minor": "22",
    "gitVersion": "v1.22.17",
    "gitCommit": "a7736eaf34d823d7652415337ac0ad06db9167fc",
    "gitTreeState": "clean",
    "buildDate": "2022-12-08T10:08:09Z",
    "goVersion": "go1.16.15",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@pytest.fixture
def discovery() -> Iterator[Discovery]:
    """An HTTP server answering the two discovery calls the way kube-apiserver does."""
    seen = Discovery("")
    answers = {"/apis": GROUPS, "/version": VERSION}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.requests.append((self.path, self.headers.get("Authorization", "")))
            # The client asks with a trailing slash; kube-apiserver answers both spellings.
            answer = answers.get(self.path.rstrip("/"))
            body = json.dumps(answer or {"message": "not found"}).encode()
            self.send_response(200 if answer else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test asserts on what was asked; stderr noise helps nobody

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_connect_discovers_what_the_cluster_serves(tmp_path: Path, discovery: Discovery) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", {"old": discovery.url}, current="old")
    cluster = Cluster.connect(path)
    assert cluster.server_version == "v1.22.17"
    assert {asked.rstrip("/") for asked, _ in discovery.requests} == {"/apis", "/version"}
    assert all(auth == f"Bearer {TOKEN}" for _, auth in discovery.requests)
    # Objects are sent in the newest version both sides know.
    assert cluster.api_version_for("autoscaling/v2") == "autoscaling/v2beta2"
    assert cluster.api_version_for("policy/v1") == "policy/v1beta1"
    assert cluster.api_version_for("apps/v1") == "apps/v1"
    assert cluster.api_version_for("v1") == "v1"
    # No Prometheus operator here: its kinds are skipped, not sent.
    assert cluster.api_version_for("monitoring.coreos.com/v1") is None


def test_an_api_server_that_does_not_answer_is_a_clear_error(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "kubeconfig", {"down": f"http://127.0.0.1:{free_port()}"}, current="down"
    )
    with pytest.raises(DeployError, match="the Kubernetes API server does not answer") as caught:
        Cluster.connect(path)
    assert "check the kubeconfig's server URL and credentials" in str(caught.value)
