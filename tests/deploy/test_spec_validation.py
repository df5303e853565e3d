"""Deploy specs refuse namespaces and images Kubernetes or a registry would not accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.errors import DeployError
from tests.deploy.specs import make_spec, rendered, validate
from tests.models import sum_graph

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "namespace",
    [
        "../etc",
        "x;rm -rf /",
        "",
        "Prod",
        "-team",
        "team-",
        "team_a",
        "team.a",
        "team\n",
        "a" * 64,
    ],
)
def test_a_namespace_that_is_not_a_dns_label_is_refused(namespace: str) -> None:
    with pytest.raises(DeployError, match="namespace") as caught:
        make_spec(namespace=namespace)
    assert repr(namespace) in str(caught.value)
    assert "lower-case letters, digits and '-'" in str(caught.value)


@pytest.mark.parametrize("namespace", ["team-a", "ml", "a" * 63, "0prod"])
def test_a_dns_label_namespace_reaches_every_manifest(namespace: str) -> None:
    objects = rendered(make_spec(namespace=namespace))
    for kind, obj in objects.items():
        where = obj["metadata"]["name" if kind == "Namespace" else "namespace"]
        assert where == namespace, kind
    validate(objects["Deployment"])


@pytest.mark.parametrize(
    "image",
    [
        "x;rm -rf /",
        "../etc",
        "",
        " nginx",
        "nginx:1.25\n",
        "team/Model:1",
        "repo:tag with space",
        "repo:a:b",
        "repo:" + "t" * 129,
        "repo:-tag",
        "repo/",
        "repo//x",
        "re..po",
        "repo-:1",
        "repo@sha256:abc",
        "repo@" + HEX,
        "host:port/repo",
        "$(id)/repo",
        "repo:`id`",
        "a" * 256,
    ],
)
def test_an_image_that_is_not_an_oci_reference_is_refused(image: str) -> None:
    with pytest.raises(DeployError, match="image") as caught:
        make_spec(image=image)
    assert repr(image) in str(caught.value)


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "localhost/modelfleet/churn-model:3-prod",
        "docker.io/library/nginx:1.25",
        "registry.example.com:5000/team/model:v1.2.3_rc-1",
        "Registry.Example.COM/team/model",
        "ghcr.io/org/my__model.x:latest",
        "quay.io/org/model@sha256:" + HEX,
        "quay.io/org/model:3-prod@sha256:" + HEX,
        "127.0.0.1:5000/model:1",
        "[::1]:5000/model:1",
    ],
)
def test_oci_references_are_accepted_and_rendered_as_given(image: str) -> None:
    objects = rendered(make_spec(image=image))
    containers = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == image


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_QUANTIZE__LATENCY_RUNS", "3")
    monkeypatch.setenv("COLUMNS", "200")
    graph = tmp_path / "sum.onnx"
    graph.write_bytes(sum_graph().SerializeToString())
    assert main(["register", str(graph), "--name", "adder"]) == 0
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--namespace", "../etc"), ("--namespace", "x;rm -rf /"), ("--image", "x;rm -rf /")],
)
def test_the_deploy_command_refuses_bad_values_in_one_line_and_writes_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    capsys.readouterr()
    out = tmp_path / "manifests"
    code = main(["deploy", "adder", "--env", "dev", flag, value, "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    assert stdout == ""
    assert stderr.startswith("error: invalid ")
    assert len(stderr.strip().splitlines()) == 1
    assert repr(value) in stderr
    assert not out.exists()
    assert not (home / "manifests").exists()


def test_rollback_refuses_a_bad_namespace_before_reaching_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-kubeconfig"
    code = main(
        ["rollback", "churn", "--env", "dev", "--namespace", "../etc", "--kubeconfig", str(missing)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "invalid namespace '../etc'" in err
    assert "kubeconfig" not in err  # refused before any cluster is asked
