"""End to end on a real Kubernetes cluster (make e2e): apply, discover, roll out, roll back.

Needs KUBECONFIG pointing at a cluster whose nodes can run locally built images (the
local cluster of scripts/k8s/ imports them with load-image.sh) and whose Service IPs are
reachable from this machine.
"""

from __future__ import annotations

import json
import os
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
NAMESPACE = "modelfleet-prod"


def log(message: str) -> None:
    # Straight to the terminal: the CLI's output may be captured by the test at the time.
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.__stdout__, flush=True)


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
        self.body = {
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": row}]
        }

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(
                        "/v2/models/iris/infer",
                        json=self.body,
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


@pytest.fixture(scope="module")
def images(world: tuple[Settings, Registry]) -> dict[str, Any]:
    """Both versions' prod images, built with podman and loaded into the cluster's node."""
    settings, reg = world
    engine = find_engine("podman")
    assert engine is not None
    started = time.monotonic()
    tags = {}
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
        tags[version] = result.tag
    return {"tags": tags, "seconds": time.monotonic() - started}


def test_deploy_roll_forward_under_load_and_back(
    world: tuple[Settings, Registry], images: dict[str, Any], kubeconfig: Path
) -> None:
    settings, _ = world
    timings: dict[str, float] = {"build and load 2 images": images["seconds"]}
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
    # One connection is one pod behind the Service: ask the pod that just answered.
    with httpx.Client(base_url=url, timeout=10) as pod:
        assert pod.post("/v2/models/iris/infer", json=Load(url).body).status_code == 200
        summary = pod.get("/monitor/summary").json()["models"][0]
    assert summary["version"] == "1" and summary["drift"]["profile"] is True
    assert summary["requests"] > 0

    os.environ["MODELFLEET_HOME"] = str(settings.home)
    assert main(["status", "--kubeconfig", str(kubeconfig), "--json"]) == 0

    from kubernetes import client

    client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)
    log("timings: " + json.dumps({k: round(v, 1) for k, v in timings.items()}))
    assert np.isfinite(sum(timings.values()))


def _job_show(kubeconfig: Path, job_id: int, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["jobs", "show", str(job_id), "--json", "--kubeconfig", str(kubeconfig)]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_training_jobs_run_as_kubernetes_jobs_and_the_queue_follows_them(
    images: dict[str, Any],
    kubeconfig: Path,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Submit, track, fail, keep the pod's output, cancel: the queue learns what the pods could
    not tell it. (These pods cannot reach this machine's loopback-only PostgreSQL and run a
    serving image, not a trainer image, so the job fails; test_retrain_loop.py has a job
    that succeeds.)"""
    from kubernetes import client

    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_DB_URL", postgres_url)
    pipeline = str(ROOT / "examples/churn/pipeline.py")
    submit = ["jobs", "submit", pipeline, "--backend", "kubernetes", "--max-attempts", "1"]
    kube = ["--kubeconfig", str(kubeconfig)]
    assert main([*submit, "--image", images["tags"]["iris:1"], *kube]) == 0
    batch = client.BatchV1Api(Cluster.connect(kubeconfig).api)
    job = batch.read_namespaced_job("modelfleet-job-1", "modelfleet-jobs")
    assert job.spec.backoff_limit == 0
    command = job.spec.template.spec.containers[0].command
    assert command[3:6] == ["--job", "1", "--record"]
    assert "--pipeline-sha256" in command  # the pod runs only the file that was submitted

    deadline = time.monotonic() + 180
    shown = _job_show(kubeconfig, 1, capsys)
    while shown["state"] != "failed" and time.monotonic() < deadline:
        time.sleep(2)
        shown = _job_show(kubeconfig, 1, capsys)
    log(f"job 1: {shown['state']}: {shown['error']}")
    assert shown["state"] == "failed"
    assert "Kubernetes Job modelfleet-job-1 failed: BackoffLimitExceeded" in shown["error"]
    assert "exited with code 1" in shown["error"]
    capsys.readouterr()
    assert main(["jobs", "logs", "1"]) == 0
    pod_output = capsys.readouterr().out
    assert "Traceback" in pod_output  # the pod's own output, kept in the queue
    log(f"job 1 log, kept from its pod: {pod_output.strip().splitlines()[-1]}")

    # An image no node can pull: the job waits, and the cluster's reason is shown.
    assert main([*submit, "--image", "localhost/modelfleet/absent:1", *kube]) == 0
    deadline = time.monotonic() + 120
    capsys.readouterr()
    assert main(["jobs", "show", "2", *kube]) == 0
    said = " ".join(capsys.readouterr().out.split())
    while "ImagePull" not in said and "ErrImagePull" not in said and time.monotonic() < deadline:
        time.sleep(2)
        assert main(["jobs", "show", "2", *kube]) == 0
        said = " ".join(capsys.readouterr().out.split())  # as one line, however wrapped
    log(f"job 2: {said}")
    assert "queued" in said and "will not start until this is fixed" in said

    assert main(["jobs", "cancel", "2", *kube]) == 0
    assert "Kubernetes Job modelfleet-job-2 deleted" in " ".join(capsys.readouterr().out.split())
    assert _job_show(kubeconfig, 2, capsys)["state"] == "cancelled"
    names = ["modelfleet-job-2"]
    deadline = time.monotonic() + 30
    while "modelfleet-job-2" in names and time.monotonic() < deadline:
        time.sleep(1)  # background deletion: the Job object goes once its pods are gone
        names = [j.metadata.name for j in batch.list_namespaced_job("modelfleet-jobs").items]
    assert "modelfleet-job-2" not in names
    client.CoreV1Api(batch.api_client).delete_namespace("modelfleet-jobs")


def test_failed_rollouts_are_explained_and_the_old_version_keeps_serving(
    world: tuple[Settings, Registry],
    images: dict[str, Any],
    kubeconfig: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubernetes import client

    settings, _ = world
    namespace = "modelfleet-broken"
    deploy = [
        "deploy",
        "--env",
        "prod",
        "--apply",
        "--namespace",
        namespace,
        "--memory",
        "128Mi",
        "--timeout",
        "120",
        "--kubeconfig",
        str(kubeconfig),
    ]
    assert _cli(settings, *deploy[:1], "iris:1", *deploy[1:], "--cpu", "100m") == 0
    cluster = Cluster.connect(kubeconfig)
    core = client.CoreV1Api(cluster.api)
    svc = core.read_namespaced_service("iris", namespace)
    url = f"http://{svc.spec.cluster_ip}:80"
    capsys.readouterr()
    failures = {
        "an image no node has": (
            ["--image", "localhost/modelfleet/absent:1", "--cpu", "100m"],
            "the image cannot be pulled",
        ),
        "more CPU than the node has": (["--cpu", "64", "--cpu-limit", "64"], "cannot be scheduled"),
    }
    for what, (flags, expected) in failures.items():
        t = time.monotonic()
        assert _cli(settings, *deploy[:1], "iris:2", *deploy[1:], *flags) == 1
        said = " ".join(capsys.readouterr().err.split())
        log(f"{what}: failed in {time.monotonic() - t:.1f} s: {said[:160]}")
        assert expected in said
        assert _served_version(url) == "1"  # the running version was never taken down
    core.delete_namespace(namespace)
