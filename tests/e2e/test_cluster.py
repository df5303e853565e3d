"""End to end on a real Kubernetes cluster (make e2e): apply, discover, roll out, roll back.

Needs KUBECONFIG pointing at a cluster whose nodes can run locally built images (the
local cluster of scripts/k8s/ imports them with load-image.sh) and whose Service IPs are
reachable from this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import modelfleet as mf
from modelfleet.build.context import LOCAL_BASE, build
from modelfleet.build.engines import find_engine
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.deploy.apply import Cluster
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.conftest import make_settings

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "modelfleet-prod"


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


@pytest.fixture(scope="module")
def kubeconfig() -> Path:
    path = os.environ.get("KUBECONFIG")
    if not path or not Path(path).is_file():
        raise RuntimeError("KUBECONFIG must point at a cluster; run 'make e2e'")
    return Path(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Registry]]:
    from sklearn.linear_model import LogisticRegression

    from tests.models import iris

    home = tmp_path_factory.mktemp("e2e") / "home"
    settings = make_settings(home)
    X, y = iris()
    with Registry.open(settings) as reg:
        for c in (1.0, 0.05):  # two versions that answer differently
            model = LogisticRegression(C=c, max_iter=500).fit(X, y)
            mf.register(
                model,
                name="iris",
                sample_input=X[:20],
                training_data=X,  # so the image carries a drift profile
                metrics={"accuracy": model.score(X, y)},
                registry=reg,
            )
        yield settings, reg


def _cli(settings: Settings, *args: str) -> int:
    os.environ["MODELFLEET_HOME"] = str(settings.home)
    return main(list(args))


class Load:
    """A client hammering the Service; every answer's status and version is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        row = [5.1, 3.5, 1.4, 0.2]
        self._body = {
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": row}]
        }

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(
                        "/v2/models/iris/infer",
                        json=self._body,
                        headers={"cache-control": "no-cache"},
                    )
                    version = r.json().get("model_version", "") if r.status_code == 200 else ""
                    self.results.append((r.status_code, version))
                except httpx.HTTPError as exc:
                    self.results.append((0, type(exc).__name__))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def failures(self) -> list[tuple[int, str]]:
        return [r for r in self.results if r[0] != 200]


def _service_url(cluster: Cluster) -> str:
    from kubernetes import client

    svc = client.CoreV1Api(cluster.api).read_namespaced_service("iris", NAMESPACE)
    return f"http://{svc.spec.cluster_ip}:80"


def _served_version(url: str) -> str:
    return httpx.get(f"{url}/v2/models/iris", timeout=10).json()["versions"][0]


def test_deploy_roll_forward_under_load_and_back(
    world: tuple[Settings, Registry], kubeconfig: Path
) -> None:
    settings, reg = world
    engine = find_engine("podman")
    assert engine is not None
    timings: dict[str, float] = {}
    started = time.monotonic()
    for version in ("iris:1", "iris:2"):
        result = build(
            reg,
            version,
            Stage.PROD,
            out=settings.home / f"ctx-{version}",
            cache=settings.home / "cache",
            engine=engine,
            base=LOCAL_BASE,
        )
        assert result.image is not None
        log(f"built {result.tag}: {result.image.size / 1e6:.1f} MB")
        subprocess.run(
            [str(ROOT / "scripts/k8s/load-image.sh"), result.tag], check=True, capture_output=True
        )
    timings["build and load 2 images"] = time.monotonic() - started

    cluster = Cluster.connect(kubeconfig)
    log(
        f"cluster {cluster.server_version}; autoscaling {cluster.served.get('autoscaling')}, "
        f"policy {cluster.served.get('policy')}"
    )
    assert cluster.api_version_for("autoscaling/v2") is not None
    assert cluster.api_version_for("policy/v1") is not None

    t = time.monotonic()
    assert (
        _cli(
            settings,
            "deploy",
            "iris:1",
            "--env",
            "prod",
            "--apply",
            "--replicas",
            "2",
            "--cpu",
            "100m",
            "--memory",
            "128Mi",
            "--kubeconfig",
            str(kubeconfig),
        )
        == 0
    )
    timings["first rollout"] = time.monotonic() - t
    url = _service_url(cluster)
    answer = httpx.post(
        f"{url}/v2/models/iris/infer",
        timeout=10,
        json={
            "inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
            ]
        },
    )
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "1"
    log(f"inference through the Service {url}: {answer.json()['outputs'][0]}")

    with Load(url) as load:
        while len(load.results) < 50:
            time.sleep(0.05)
        t = time.monotonic()
        assert (
            _cli(
                settings,
                "deploy",
                "iris:2",
                "--env",
                "prod",
                "--apply",
                "--replicas",
                "2",
                "--cpu",
                "100m",
                "--memory",
                "128Mi",
                "--kubeconfig",
                str(kubeconfig),
            )
            == 0
        )
        timings["rolling update to v2"] = time.monotonic() - t
        deadline = time.monotonic() + 60
        while "2" not in {v for _, v in load.results[-20:]} and time.monotonic() < deadline:
            time.sleep(0.1)
        count = len(load.results)
        while len(load.results) < count + 100:
            time.sleep(0.05)
    versions = {v for s, v in load.results if s == 200}
    log(
        f"rolling update: {len(load.results)} requests, {len(load.failures)} failed, "
        f"versions seen {sorted(versions)}"
    )
    assert load.failures == [], load.failures[:5]
    assert versions == {"1", "2"}

    with Load(url) as load:
        while len(load.results) < 50:
            time.sleep(0.05)
        t = time.monotonic()
        assert (
            _cli(settings, "rollback", "iris", "--env", "prod", "--kubeconfig", str(kubeconfig))
            == 0
        )
        timings["rollback"] = time.monotonic() - t
        count = len(load.results)
        while len(load.results) < count + 100:
            time.sleep(0.05)
    log(f"rollback: {len(load.results)} requests, {len(load.failures)} failed")
    assert load.failures == []
    assert _served_version(url) == "1"
    # The rolled-back pods read version 1's own serve config (each config is its own
    # ConfigMap), and watch their inputs against the training profile baked in the image.
    summary = httpx.get(f"{url}/monitor/summary", timeout=10).json()["models"][0]
    assert summary["version"] == "1" and summary["drift"]["profile"] is True
    assert summary["requests"] > 0

    os.environ["MODELFLEET_HOME"] = str(settings.home)
    assert main(["status", "--kubeconfig", str(kubeconfig), "--json"]) == 0

    from kubernetes import client

    client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)
    log("timings: " + json.dumps({k: round(v, 1) for k, v in timings.items()}))
    assert np.isfinite(sum(timings.values()))
