"""Reading the tracks' pods through the API server's pod proxy, as ``release`` does.

No cluster runs here (tests/e2e has one): a small loopback server answers the two calls
the release makes, as kube-apiserver does: the pod list by label selector (``k=v`` and
``k!=v`` terms; ``!=`` also matches pods without the label) and
``/pods/NAME:PORT/proxy/metrics``, which it forwards to a real modelfleet server standing
in for that pod. The pods carry the labels the manifests render.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.deploy import (
    DeploySpec,
    Observation,
    PodProxyScraper,
    judge,
    to_dict,
    track_selectors,
)
from modelfleet.deploy.canary import canary_deployment
from modelfleet.errors import DeployError
from modelfleet.kube import Cluster, load_api_client
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig, ServeConfig
from tests.deploy.specs import make_spec, rendered
from tests.kube.kubeconfigs import kubeconfig
from tests.models import sum_graph
from tests.serving.conftest import RunningServer, run_server

NAMESPACE = "modelfleet-prod"


@dataclass
class Pod:
    """A pod as the API lists it, and the server that answers for it (None: not ready)."""

    name: str
    labels: dict[str, str]
    server: RunningServer | None

    def as_api(self) -> dict[str, Any]:
        ready = self.server is not None
        return {
            "metadata": {"name": self.name, "namespace": NAMESPACE, "labels": self.labels},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "localhost/modelfleet/adder:2-prod",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    }
                ]
            },
            "status": {
                "phase": "Running" if ready else "Pending",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }


def _selected(selector: str, labels: dict[str, str]) -> bool:
    for term in selector.split(","):
        key, negated, value = term.partition("!=")
        if negated:
            if labels.get(key) == value:
                return False
        elif labels.get(term.partition("=")[0]) != term.partition("=")[2]:
            return False
    return True


@dataclass
class ApiServer:
    """What the loopback API server lists and saw asked."""

    url: str = ""
    pods: list[Pod] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    proxy_status: int = 200


@pytest.fixture
def api() -> Iterator[ApiServer]:
    seen = ApiServer()
    pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(url.path)
            seen.asked.append(urllib.parse.unquote(self.path))
            if path == pods_path:
                selector = urllib.parse.parse_qs(url.query)["labelSelector"][0]
                items = [p.as_api() for p in seen.pods if _selected(selector, p.labels)]
                doc = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
                self._answer(200, json.dumps(doc).encode(), "application/json")
                return
            target, _, rest = path.removeprefix(pods_path + "/").partition("/proxy")
            pod = next(p for p in seen.pods if p.name == target.partition(":")[0])
            if seen.proxy_status != 200 or pod.server is None:
                status = seen.proxy_status if pod.server else 503
                doc = {"kind": "Status", "message": f"pods/proxy refused for {target}"}
                self._answer(status, json.dumps(doc).encode(), "application/json")
                return
            text = httpx.get(pod.server.url + rest).content
            self._answer(200, text, "text/plain; version=0.0.4")

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test asserts on what was asked

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


@pytest.fixture
def adders(settings: Settings, registry: Registry) -> Iterator[dict[str, RunningServer]]:
    """adder 1 served twice (the stable's pods) and adder 2 once (the canary's)."""
    for _ in range(2):
        mf.register(sum_graph(), name="adder", registry=registry)
    pods = {"stable-a": "adder:1", "stable-b": "adder:1", "canary-a": "adder:2"}
    with ExitStack() as stack:
        yield {
            pod: stack.enter_context(
                run_server(ServeConfig(models=(ModelConfig(ref=ref),)), settings)
            )
            for pod, ref in pods.items()
        }


def _labels(deployment: Any) -> dict[str, str]:
    labels: dict[str, str] = to_dict(deployment)["spec"]["template"]["metadata"]["labels"]
    return labels


def _cluster(api: ApiServer, tmp_path: Path) -> Cluster:
    path = kubeconfig(tmp_path / "kubeconfig", {"test": api.url}, current="test")
    return Cluster(load_api_client(path))


def _spec(version: int) -> DeploySpec:
    return make_spec(model="adder", version=version, image="localhost/modelfleet/adder:2-prod")


def test_the_tracks_are_read_through_the_pod_proxy(
    api: ApiServer, adders: dict[str, RunningServer], tmp_path: Path
) -> None:
    stable_labels = rendered(_spec(1))["Deployment"]["spec"]["template"]["metadata"]["labels"]
    canary_labels = _labels(canary_deployment(_spec(2), 2))
    api.pods = [
        Pod("adder-6d9f-a", stable_labels, adders["stable-a"]),
        Pod("adder-6d9f-b", stable_labels, adders["stable-b"]),
        Pod("adder-canary-77c4-a", canary_labels, adders["canary-a"]),
        Pod("adder-canary-77c4-b", canary_labels, None),  # still starting: no traffic yet
        Pod("other-model-1", {"app.kubernetes.io/name": "other"}, adders["stable-a"]),
    ]
    scraper = PodProxyScraper(_cluster(api, tmp_path), NAMESPACE, track_selectors(_spec(2)))
    observation = Observation(scraper, "adder", {"stable": "1", "canary": "2"})
    body = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    for i in range(150):
        server = adders[("stable-a", "stable-b", "canary-a")[i % 3]]
        assert server.http.post("/v2/models/adder/infer", json=body).status_code == 200
    figures = observation.figures()
    assert (figures["stable"].pods, figures["canary"].pods) == (2, 1)
    assert (figures["stable"].requests, figures["canary"].requests) == (100, 50)
    assert judge(figures["stable"], figures["canary"]).decision == "not-enough-traffic"
    proxied = {a.split("/pods/")[1] for a in api.asked if "/proxy/" in a}
    assert proxied == {
        "adder-6d9f-a:8080/proxy/metrics",
        "adder-6d9f-b:8080/proxy/metrics",
        "adder-canary-77c4-a:8080/proxy/metrics",
    }


def test_a_proxy_the_user_may_not_use_is_a_clear_error(
    api: ApiServer, adders: dict[str, RunningServer], tmp_path: Path
) -> None:
    labels = _labels(canary_deployment(_spec(2), 1))
    api.pods = [Pod("adder-canary-77c4-a", labels, adders["canary-a"])]
    api.proxy_status = 403
    scraper = PodProxyScraper(_cluster(api, tmp_path), NAMESPACE, track_selectors(_spec(2)))
    with pytest.raises(DeployError) as caught:
        scraper.expositions("canary")
    message = str(caught.value)
    assert message.startswith(
        f"cannot read the metrics of pod {NAMESPACE}/adder-canary-77c4-a through the API server"
    )
    assert "pods/proxy refused" in message
    assert message.endswith("the kubeconfig's user needs 'get' on pods/proxy in the namespace")
