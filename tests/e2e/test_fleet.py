"""End to end on a real cluster (make e2e): a fleet sharing its state, releases judged as canaries.

Timeline of one run, printed as it goes:

1. ``flower:1`` on 2 replicas, sharing predictions and feedback in a Redis that runs in the
   cluster's own network namespace (bound to the node's address: reachable from pods and
   from this machine, nowhere else);
2. feedback sent through the Service, each call on a new connection (so to any replica):
   none gets 404, and every replica reports the same live accuracy and cache state;
3. ``flower:2`` is released as a canary beside ``flower:1``, judged and promoted;
4. a deliberately worse ``flower:3`` (trained on wrong labels) is released and rolled back by
   the judge on live accuracy;

while a client calls through the Service and labels its answers: 0 requests fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import modelfleet as mf
from modelfleet.build.context import LOCAL_BASE, build
from modelfleet.build.engines import find_engine
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.kube import Cluster
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.conftest import make_settings

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "modelfleet-fleet"
NETNS = os.environ.get("K8S_NETNS", "modelfleet-k8s")
NODE_IP = os.environ.get("K8S_NODE_IP", "10.213.0.2")
REDIS_PORT = 16379
START = time.monotonic()


def log(message: str) -> None:
    """One timeline line, straight to the terminal (the CLI's output may be captured)."""
    stamp = time.monotonic() - START
    print(f"[fleet {stamp:6.1f}s] {message}", file=sys.__stdout__, flush=True)


@pytest.fixture(scope="module")
def kubeconfig() -> Path:
    path = os.environ.get("KUBECONFIG")
    if not path or not Path(path).is_file():
        raise RuntimeError("KUBECONFIG must point at a cluster; run 'make e2e'")
    return Path(path)


@pytest.fixture(scope="module")
def state_url() -> Iterator[str]:
    """Redis in the cluster's network namespace, on the node's address."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server missing: make system-deps installs it"
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "modelfleet-fleet-redis"
    folder.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            NETNS,
            binary,
            "--bind",
            NODE_IP,
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://{NODE_IP}:{REDIS_PORT}/0"
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "Redis in the cluster namespace did not start"
                time.sleep(0.2)
        log(f"state backend: Redis at {url} (cluster network namespace)")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Registry, Any]]:
    """flower:1 and :2 (good, answering differently) and :3 (trained on wrong labels)."""
    from sklearn.linear_model import LogisticRegression

    from tests.models import iris

    home = tmp_path_factory.mktemp("fleet") / "home"
    settings = make_settings(home)
    X, y = iris()
    with Registry.open(settings) as reg:
        for c, labels in ((1.0, y), (0.3, y), (1.0, (y + 1) % 3)):
            model = LogisticRegression(C=c, max_iter=500).fit(X, labels)
            mf.register(
                model,
                name="flower",
                sample_input=X[:20],
                metrics={"accuracy": float(np.mean(model.predict(X) == y))},
                registry=reg,
            )
        yield settings, reg, (X, y)


@pytest.fixture(scope="module")
def images(fleet: tuple[Settings, Registry, Any]) -> dict[str, str]:
    """The three versions' prod images, built with podman and loaded into the cluster."""
    settings, reg, _ = fleet
    engine = find_engine("podman")
    assert engine is not None
    tags = {}
    for ref in ("flower:1", "flower:2", "flower:3"):
        result = build(
            reg,
            ref,
            Stage.PROD,
            out=settings.home / f"ctx-{ref}",
            cache=settings.home / "cache",
            engine=engine,
            base=LOCAL_BASE,
        )
        subprocess.run(
            [str(ROOT / "scripts/k8s/load-image.sh"), result.tag], check=True, capture_output=True
        )
        tags[ref] = result.tag
    log(f"built and loaded {', '.join(tags.values())}")
    return tags


class LabellingClient:
    """Calls through the Service, a new connection every 10 calls, and labels every answer."""

    def __init__(self, url: str, X: Any, y: Any) -> None:
        self.url, self.X, self.y = url, X, y
        self.answers: list[tuple[int, str]] = []
        self.labels: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            # Many clients, many connections: kube-proxy balances connections, not requests,
            # so one kept-alive connection would only ever meet one pod.
            with httpx.Client(base_url=self.url, timeout=10) as client:
                for _ in range(10):
                    if self._stop.is_set():
                        break
                    self._call(client, i % len(self.X))
                    i += 1

    def _call(self, client: httpx.Client, row: int) -> None:
        try:
            r = client.post("/v2/models/flower/infer", json=_row(self.X[row]), headers=_NO_CACHE)
        except httpx.HTTPError as exc:
            self.answers.append((0, type(exc).__name__))
            return
        version = r.json().get("model_version", "") if r.status_code == 200 else ""
        self.answers.append((r.status_code, version))
        if r.status_code != 200:
            return
        label = {"request_ids": [r.json()["id"]], "labels": [int(self.y[row])]}
        try:
            self.labels.append(client.post("/v2/models/flower/feedback", json=label).status_code)
        except httpx.HTTPError:
            self.labels.append(0)
        time.sleep(0.01)

    def __enter__(self) -> LabellingClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def failures(self) -> list[tuple[int, str]]:
        return [a for a in self.answers if a[0] != 200]

    def versions(self, last: int | None = None) -> set[str]:
        picked = self.answers[-last:] if last else self.answers
        return {v for s, v in picked if s == 200}


_NO_CACHE = {"cache-control": "no-cache"}


def _row(x: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [float(v) for v in x]}
        ]
    }


def _cli(settings: Settings, *args: str) -> int:
    os.environ["MODELFLEET_HOME"] = str(settings.home)
    return main(list(args))


def _pods(cluster: Cluster) -> list[str]:
    from kubernetes import client

    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        NAMESPACE, label_selector="app.kubernetes.io/name=flower"
    )
    return [
        p.status.pod_ip
        for p in pods.items
        if p.status.pod_ip
        and p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def _replica_views(cluster: Cluster) -> list[tuple[Any, ...]]:
    views = []
    for ip in _pods(cluster):
        doc = httpx.get(f"http://{ip}:8080/monitor/summary", timeout=10).json()["models"][0]
        views.append((doc["accuracy"]["live"], doc["accuracy"]["labelled_requests"], doc["cache"]))
    return views


def test_a_fleet_shares_its_state_and_releases_are_judged(
    fleet: tuple[Settings, Registry, Any],
    images: dict[str, str],
    state_url: str,
    kubeconfig: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubernetes import client

    settings, reg, (X, y) = fleet
    kube = ["--kubeconfig", str(kubeconfig)]
    size = ["--cpu", "100m", "--memory", "128Mi", "--namespace", NAMESPACE]
    cluster = Cluster.connect(kubeconfig)
    mf.promote("flower:1", to="prod", registry=reg)
    deploy = ["deploy", "flower@prod", "--env", "prod", "--apply", "--replicas", "2", *size]
    assert _cli(settings, *deploy, "--state-url", state_url, *kube) == 0
    svc = client.CoreV1Api(cluster.api).read_namespaced_service("flower", NAMESPACE)
    url = f"http://{svc.spec.cluster_ip}:80"
    log(f"flower:1 on {len(_pods(cluster))} replicas behind {url}, state shared in Redis")

    with LabellingClient(url, X, y) as load:
        # Feedback through the Service, each call on a new connection: kube-proxy picks a
        # replica at random, so about half land on the replica that did not answer.
        statuses = []
        for i in range(60):
            answer = httpx.post(f"{url}/v2/models/flower/infer", json=_row(X[i]), timeout=10)
            assert answer.status_code == 200
            label = {"request_ids": [answer.json()["id"]], "labels": [int(y[i])]}
            statuses.append(
                httpx.post(f"{url}/v2/models/flower/feedback", json=label, timeout=10).status_code
            )
        log(
            f"feedback through the Service: {len(statuses)} sent on new connections, "
            f"{statuses.count(404)} got 404, {statuses.count(200)} joined"
        )
        assert statuses == [200] * 60

        deadline = time.monotonic() + 15
        views = _replica_views(cluster)
        while len({v[:1] + v[2:] for v in views}) != 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            views = _replica_views(cluster)
        log(f"every replica's (live accuracy, labelled requests, cache): {views}")
        assert len(views) == 2 and len({(v[0], v[2]) for v in views}) == 1

        release = ["release", "flower", "--env", "prod", "--apply", *size, *kube]
        judge = ["--window", "20", "--min-requests", "20", "--min-labelled", "20"]
        mf.promote("flower:2", to="prod", registry=reg)
        capsys.readouterr()
        code = _cli(settings, *release, *judge)
        said = capsys.readouterr().out
        log("release flower:2: " + " | ".join(said.strip().splitlines()[-6:]))
        assert code == 0 and "promoted" in said
        deadline = time.monotonic() + 30
        while load.versions(last=20) != {"2"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert load.versions(last=20) == {"2"}

        mf.promote("flower:3", to="prod", registry=reg)
        code = _cli(settings, *release, *judge)
        said = capsys.readouterr()
        log("release flower:3: " + " | ".join(said.out.strip().splitlines()[-6:]))
        assert code == 1 and "rolled back" in said.out
        assert "accuracy" in said.out
        time.sleep(3)
        assert load.versions(last=20) == {"2"}
    log(
        f"client through the Service: {len(load.answers)} requests, {len(load.failures)} "
        f"failed, versions {sorted(load.versions())}; {len(load.labels)} labels, "
        f"{sum(1 for s in load.labels if s != 200)} refused"
    )
    assert load.failures == [], load.failures[:5]
    assert all(s == 200 for s in load.labels)
    client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)
