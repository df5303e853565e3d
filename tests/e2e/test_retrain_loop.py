"""End to end on a real cluster (make e2e): the loop closes on the cluster, without a person.

The registry's PostgreSQL and an S3-compatible artifact store (moto) run in the cluster's
own network namespace, bound to the node's address: the pods reach them, this machine
reaches them over the cluster's private link, nothing else can. Timeline:

1. the churn pipeline registers ``churn:1`` in that shared registry; it serves on 2 replicas
   sharing their state in Redis;
2. a client sends customers whose prices doubled and labels every answer wrong;
3. ``modelfleet monitor watch --auto-retrain --backend kubernetes --release prod`` sees the
   accuracy fall, submits the pipeline as a Kubernetes Job on its trainer image; the Job
   trains and registers ``churn:2`` (lineage naming the job) with its gate passed;
4. the watcher promotes ``churn:2`` to prod and releases it: its image is built and loaded,
   it runs as a canary, is judged and promoted to every replica;

while the client's calls through the Service never fail.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelfleet.build.context import LOCAL_BASE
from modelfleet.cli import main
from modelfleet.client import Client
from modelfleet.kube import Cluster
from modelfleet.registry import Registry
from tests.conftest import make_settings
from tests.e2e.test_fleet import NETNS, NODE_IP, ROOT, kubeconfig, log, state_url
from tests.servers import postgres_bin

pytestmark = pytest.mark.e2e
NAMESPACE = "modelfleet-churn"
PG_PORT, S3_PORT = 15432, 15000
INITDB = ("--auth=trust", "-E", "UTF8", "--no-sync")
PIPELINE = ROOT / "examples" / "churn" / "pipeline.py"
__all__ = ["kubeconfig", "state_url"]  # fixtures shared with test_fleet


def _in_cluster_netns(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", NETNS, *argv]


@pytest.fixture(scope="module")
def shared_registry() -> Iterator[dict[str, str]]:
    """PostgreSQL and moto's S3 in the cluster's network namespace; the settings naming them."""
    # Not under pytest's folder: that is root's alone, and PostgreSQL runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="modelfleet-shared-"))
    root.chmod(0o711)  # 'postgres' passes through to its own folder
    pg = root / "pg"
    pg.mkdir()
    user = pwd.getpwnam("postgres")
    os.chown(pg, user.pw_uid, user.pw_gid)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    bindir = postgres_bin()
    data = pg / "data"
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "modelfleet", *INITDB],
        check=True,
        capture_output=True,
    )
    with (data / "pg_hba.conf").open("a") as hba:  # the node, its pods and this machine
        hba.write("host all all 10.213.0.0/16 trust\n")
    options = f"-p {PG_PORT} -h {NODE_IP} -k {pg} -c fsync=off"
    subprocess.run(
        _in_cluster_netns(
            *as_postgres,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(pg / "log"),
            *("-o", options, "-w", "-t", "60", "start"),
        ),
        check=True,
        capture_output=True,
    )
    moto_log = (root / "moto.log").open("wb")
    moto = subprocess.Popen(
        _in_cluster_netns(sys.executable, "-m", "moto.server", "-H", NODE_IP, "-p", str(S3_PORT)),
        stdout=moto_log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    endpoint = f"http://{NODE_IP}:{S3_PORT}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto did not start in the cluster namespace"
                time.sleep(0.3)
        import s3fs

        s3 = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
        s3fs.S3FileSystem(**s3).mkdir("modelfleet-e2e")
        env = {
            "MODELFLEET_HOME": str(root / "home"),
            "MODELFLEET_DB_URL": f"postgresql://modelfleet@{NODE_IP}:{PG_PORT}/postgres",
            "MODELFLEET_ARTIFACTS": "s3://modelfleet-e2e/artifacts",
            "MODELFLEET_ARTIFACTS_OPTIONS": json.dumps(s3),
        }
        log(f"shared registry: PostgreSQL {NODE_IP}:{PG_PORT}, S3 {endpoint} (cluster namespace)")
        yield env
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        moto_log.close()
        subprocess.run(
            _in_cluster_netns(
                *as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


def _customers(rows: int, seed: int, price_factor: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows),
            "monthly": (rng.gamma(4.0, 18.0, rows) * price_factor).round(2).astype("float32"),
            "calls": rng.poisson(1.5, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


class WrongLabels:
    """Drifted customers through the Service; every answer labelled wrong. Counts failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seed = 0
        while not self._stop.is_set():
            with Client(self.url, timeout=10) as client:  # a new connection: any replica
                for _ in range(5):
                    seed += 1
                    try:
                        out = client.predict("churn", _customers(4, seed, 2.0), cache=False)
                        wrong = [1 - int(p) for p in np.argmax(out["probabilities"], axis=1)]
                        client.feedback("churn", [str(client.last_request_id)], [wrong])
                        self.answers.append(str(client.last_request_id))
                    except Exception as exc:  # any failure is what the test counts
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.05)

    def __enter__(self) -> WrongLabels:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _fresh_namespaces(cluster: Cluster, *names: str) -> None:
    """Remove what an earlier run left (a Job named like this run's first job, say)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(cluster.api)
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + 180
    while {n.metadata.name for n in core.list_namespace().items} & set(names):
        assert time.monotonic() < deadline, f"namespaces {names} were not deleted"
        time.sleep(2)


def _cli(*args: str) -> int:
    return main(list(args))


def test_drift_and_wrong_labels_retrain_on_the_cluster_and_release_a_canary(
    shared_registry: dict[str, str],
    state_url: str,
    kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubernetes import client

    for key, value in shared_registry.items():
        monkeypatch.setenv(key, value)
    _fresh_namespaces(Cluster.connect(kubeconfig), NAMESPACE, "modelfleet-jobs")
    kube = ["--kubeconfig", str(kubeconfig)]
    size = ["--cpu", "100m", "--memory", "192Mi", "--namespace", NAMESPACE]
    assert _cli("pipeline", "run", str(PIPELINE)) == 0
    assert _cli("promote", "churn:1", "--to", "prod") == 0
    log("churn:1 trained by the pipeline (here), registered in the shared registry, at prod")

    assert _cli("build", "churn@prod", "--env", "prod", "--base", LOCAL_BASE) == 0
    capsys.readouterr()
    assert _cli("build", "--trainer", str(PIPELINE), "--base", LOCAL_BASE, "--json") == 0
    trainer = json.loads(capsys.readouterr().out)
    loader = str(ROOT / "scripts/k8s/load-image.sh")
    subprocess.run(
        [loader, "localhost/modelfleet/churn:1-prod", trainer["tag"]],
        check=True,
        capture_output=True,
    )
    megabytes = trainer["size_bytes"] / 1e6
    log(f"trainer image {trainer['tag']} ({megabytes:.0f} MB) loaded in the cluster")

    deploy = ["deploy", "churn@prod", "--env", "prod", "--apply", "--replicas", "2", *size]
    assert _cli(*deploy, "--state-url", state_url, *kube) == 0
    cluster = Cluster.connect(kubeconfig)
    svc = client.CoreV1Api(cluster.api).read_namespaced_service("churn", NAMESPACE)
    url = f"http://{svc.spec.cluster_ip}:80"
    log(f"churn:1 on 2 replicas behind {url}")

    watch = [
        sys.executable,
        "-m",
        "modelfleet",
        "monitor",
        "watch",
        url,
        "--auto-retrain",
        "--backend",
        "kubernetes",
        "--release",
        "prod",
        "--release-window",
        "20",
        "--min-labels",
        "20",
        "--for",
        "0",
        "--interval",
        "2",
        "--rounds",
        "400",
        "--retrain-param",
        "seed=7",  # the newer data the retraining run learns from
        "--json",
        *kube,
    ]
    for option in ("--build", f"--base={LOCAL_BASE}", f"--load-with={loader}"):
        watch.append(f"--release-arg={option}")
    for option in ("--min-requests=20", "--min-labelled=20", *size):
        watch.append(f"--release-arg={option}")
    events: list[dict[str, Any]] = []
    with WrongLabels(url) as load:
        proc = subprocess.Popen(
            watch,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **shared_registry},
        )
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 900
            lines: list[str] = []
            for line in proc.stdout:  # indented JSON documents, one per decision or event
                if line.startswith("{"):
                    lines = []
                lines.append(line)
                if line.rstrip() != "}":
                    continue
                event = json.loads("".join(lines))
                events.append(event)
                log("watcher: " + (event.get("message") or event.get("reason") or line.strip()))
                if "release_exit_code" in event or time.monotonic() > deadline:
                    break
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        time.sleep(3)
    assert events and events[-1].get("release_exit_code") == 0, (events, err[-3000:])
    release = events[-1]["release"]
    for check in release["verdict"]["checks"]:
        log(f"release churn:2 judged: {check['rule']}: {check['detail']}")
    log(f"release: {release['action']} (stable was version {release['stable']['version']})")
    assert release["action"] == "promoted"
    with Registry.open(make_settings(shared_registry["MODELFLEET_HOME"])) as reg:
        churn2 = reg.get("churn:2")
        assert reg.get("churn@prod").version == 2
        job = churn2.lineage.extra.get("job")
    log(f"churn:2 registered by job {job}, at prod; lineage {churn2.lineage.extra}")
    assert job is not None
    log(f"client: {len(load.answers)} calls, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    served = httpx.get(f"{url}/v2/models/churn", timeout=10).json()
    log(f"the Service now serves churn version {served['versions']}")
    assert served["versions"] == ["2"]
    client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)
    client.CoreV1Api(cluster.api).delete_namespace("modelfleet-jobs")
