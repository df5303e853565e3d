"""Client set-up: the missing extra, kubeconfig loading and its errors, API error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from modelfleet.errors import DeployError, MissingDependencyError
from modelfleet.kube import (
    Cluster,
    api_error_message,
    load_api_client,
    require_kubernetes,
    to_api_dict,
)
from tests.kube.kubeconfigs import kubeconfig


def test_the_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError) as caught:
        require_kubernetes("run Kubernetes Jobs")
    assert str(caught.value) == (
        "kubernetes is not installed (needed to run Kubernetes Jobs); "
        "run: pip install 'modelfleet[k8s]'"
    )
    with pytest.raises(MissingDependencyError, match=r"talk to a cluster.*modelfleet\[k8s\]"):
        Cluster.connect(Path("/nowhere/kubeconfig"))


def test_a_kubeconfig_file_gives_a_client_for_its_current_context(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "kubeconfig",
        {"lab": "https://127.0.0.1:6443", "staging": "https://127.0.0.1:7443"},
        current="lab",
    )
    api = load_api_client(path)
    assert isinstance(api, client.ApiClient)
    assert api.configuration.host == "https://127.0.0.1:6443"  # its token: see test_apply
    assert load_api_client(path, context="staging").configuration.host == "https://127.0.0.1:7443"


def test_kubeconfig_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "a.yaml", {"a": "https://127.0.0.1:6443"}, current="a")
    # KUBECONFIG may list several files; missing ones are passed over, as kubectl does.
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "absent"), str(first)]))
    assert load_api_client().configuration.host == "https://127.0.0.1:6443"
    monkeypatch.delenv("KUBECONFIG")
    home = kubeconfig(
        Path("~/.kube/config").expanduser(), {"h": "https://127.0.0.1:8443"}, current="h"
    )
    assert home.is_relative_to(tmp_path)
    assert load_api_client().configuration.host == "https://127.0.0.1:8443"


def test_a_missing_kubeconfig_says_which_file_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DeployError) as given:
        load_api_client(tmp_path / "nope.yaml")
    assert str(given.value) == (
        f"no cluster configuration: kubeconfig {tmp_path / 'nope.yaml'} does not exist; "
        "pass --kubeconfig or set KUBECONFIG"
    )
    with pytest.raises(DeployError, match=r"~?.*\.kube/config \(KUBECONFIG is not set\)"):
        load_api_client()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(DeployError, match=r"KUBECONFIG=.*gone\.yaml does not exist"):
        load_api_client()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is empty"),
        ("apiVersion: v1\nkind: Config\n", "current-context"),
        ("clusters: [\n\t", "found character"),
        ("- just\n- a list\n", "list indices"),
    ],
)
def test_a_broken_kubeconfig_is_a_clear_error(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(DeployError, match=f"cannot load the cluster configuration from {path}"):
        load_api_client(path)
    with pytest.raises(DeployError, match=why):
        load_api_client(path)


def test_an_unknown_context_is_a_clear_error(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", {"lab": "https://127.0.0.1:6443"}, current="lab")
    with pytest.raises(DeployError, match=r"cannot load the cluster configuration.*prod"):
        load_api_client(path, context="prod")


@pytest.mark.skipif(
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(),
    reason="running in a pod: the in-cluster config would load",
)
def test_inside_a_pod_without_a_service_account_the_error_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(DeployError, match="cannot load the in-cluster configuration"):
        load_api_client()


def test_api_errors_read_the_servers_message() -> None:
    refused = client.ApiException(status=422, reason="Unprocessable Entity")
    refused.body = json.dumps(
        {"kind": "Status", "message": 'Deployment.apps "iris" is invalid: spec.replicas: -1'}
    )
    assert api_error_message(refused) == 'Deployment.apps "iris" is invalid: spec.replicas: -1'
    refused.body = "<html>bad gateway</html>"
    assert api_error_message(refused) == "<html>bad gateway</html>"
    assert api_error_message(ConnectionRefusedError()) == "ConnectionRefusedError"
    assert api_error_message(OSError("line one\nline two")) == "line one"


def test_client_models_become_the_dicts_the_api_reads() -> None:
    job = client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name="modelfleet-job-1", labels={"modelfleet.io/job": "1"}),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="job", image="trainer:1")],
                )
            ),
        ),
    )
    assert to_api_dict(job) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "modelfleet-job-1", "labels": {"modelfleet.io/job": "1"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "job", "image": "trainer:1"}],
                }
            },
        },
    }


def test_the_kube_package_stands_below_deploy_and_jobs() -> None:
    """Importing it loads none of the packages that build on it."""
    script = (
        "import sys, modelfleet.kube; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('modelfleet.')}))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == ["errors", "kube", "lazy"]
