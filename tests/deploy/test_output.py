"""What leaves modelfleet: objects in apply order, valid for every supported Kubernetes version
and spec shape, written as files that parse back to exactly what was rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelfleet.deploy import render, to_dict, write
from modelfleet.refs import Stage
from tests.deploy.specs import NEWEST, OLDEST, make_spec, rendered, validate

SHAPES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no limits": {"cpu_limit": None, "memory_limit": None},
    "autoscaled on queue": {"autoscale": (1, 20), "queue_target": 5},
    "gpu in dev": {"gpu": 2, "environment": Stage.DEV, "namespace": "ml-dev"},
    "profiled, custom port": {"profile": True, "port": 9000, "drain_seconds": 5},
}
CUSTOM = ("monitoring.coreos.com/", "serving.kserve.io/")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_every_core_object_of_every_shape_is_valid(shape: str, version: str) -> None:
    for data in rendered(make_spec(**SHAPES[shape])).values():
        if not data["apiVersion"].startswith(CUSTOM):
            validate(data, version)


def test_the_schema_check_would_catch_a_misspelt_field() -> None:
    deployment = rendered(make_spec())["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["read_only"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_objects_come_in_the_order_they_can_be_applied() -> None:
    kinds = [to_dict(o)["kind"] for o in render(make_spec(autoscale=(2, 4)))]
    assert kinds == [
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ]
    # The pods mount the ConfigMap: it must exist before the Deployment rolls out.
    assert kinds.index("ConfigMap") < kinds.index("Deployment")


def test_everything_but_the_namespace_lives_in_the_models_namespace() -> None:
    for shape in SHAPES.values():
        spec = make_spec(**shape)
        objects = rendered(spec)
        assert objects["Namespace"]["metadata"]["name"] == spec.ns
        for kind, data in objects.items():
            if kind != "Namespace":
                assert data["metadata"]["namespace"] == spec.ns, kind


def test_rendering_is_deterministic() -> None:
    first = [to_dict(o) for o in render(make_spec(autoscale=(2, 4), gpu=1))]
    second = [to_dict(o) for o in render(make_spec(autoscale=(2, 4), gpu=1))]
    assert first == second


def test_written_files_parse_back_to_what_was_rendered(tmp_path: Path) -> None:
    objects = render(make_spec(autoscale=(2, 4)))
    files = write(objects, tmp_path / "out")
    assert [f.name for f in files] == [
        "namespace.yaml",
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "networkpolicy.yaml",
        "servicemonitor.yaml",
        "prometheusrule.yaml",
    ]
    for path, obj in zip(files, objects, strict=True):
        assert yaml.safe_load(path.read_text()) == to_dict(obj)
    kustomization = yaml.safe_load((tmp_path / "out" / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == [f.name for f in files]


def test_files_start_with_the_api_version_and_kind_like_kubectl_writes_them(
    tmp_path: Path,
) -> None:
    (path, *_) = write(render(make_spec()), tmp_path)
    first_lines = path.read_text().splitlines()[:2]
    assert first_lines == ["apiVersion: v1", "kind: Namespace"]


def test_kserve_output_is_two_files(tmp_path: Path) -> None:
    files = write(render(make_spec(), kserve=True), tmp_path)
    assert [f.name for f in files] == ["namespace.yaml", "inferenceservice.yaml"]
    isvc = yaml.safe_load(files[1].read_text())
    assert isvc["spec"]["predictor"]["containers"][0]["name"] == "kserve-container"


def test_writing_again_replaces_the_files(tmp_path: Path) -> None:
    write(render(make_spec(replicas=2)), tmp_path)
    write(render(make_spec(replicas=5)), tmp_path)
    deployment = yaml.safe_load((tmp_path / "deployment.yaml").read_text())
    assert deployment["spec"]["replicas"] == 5


def test_to_dict_hands_out_copies() -> None:
    (namespace, *_) = render(make_spec())
    data = to_dict(namespace)
    data["metadata"]["labels"].clear()
    assert to_dict(namespace)["metadata"]["labels"]  # the rendered object is untouched


def test_to_dict_also_serialises_the_official_clients_models() -> None:
    from kubernetes import client

    secret = client.V1Secret(
        api_version="v1", kind="Secret", metadata=client.V1ObjectMeta(name="s"), type="Opaque"
    )
    assert to_dict(secret) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "Opaque",
    }


def test_no_rendered_object_carries_a_null() -> None:
    def nulls(value: Any, path: str = "") -> list[str]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in nulls(v, f"{path}.{k}")]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in nulls(v, f"{path}[{i}]")]
        return [path] if value is None else []

    for shape in SHAPES.values():
        for kserve in (False, True):
            for kind, data in rendered(make_spec(**shape), kserve=kserve).items():
                assert nulls(data) == [], kind
