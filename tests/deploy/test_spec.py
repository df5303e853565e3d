"""Deploy specs: names Kubernetes accepts, one namespace per environment, bad input explained."""

from __future__ import annotations

import re

import pytest

from modelfleet.deploy import parse_autoscale
from modelfleet.errors import DeployError, ModelfleetError
from modelfleet.kube import check_quantity, k8s_name
from modelfleet.refs import Stage
from tests.deploy.specs import make_spec

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("churn", "churn"),
        ("Churn_Model", "churn-model-431ffbc9"),
        ("fraud.detector v2", "fraud-detector-v2-bead6807"),
        ("--edge--", "edge-38e00fb2"),
        ("Ünïcode", "n-code-00b24be8"),
    ],
)
def test_model_names_become_dns_labels(model: str, name: str) -> None:
    assert k8s_name(model) == name
    assert DNS_LABEL.fullmatch(name)


def test_long_names_are_cut_to_fit_generated_suffixes() -> None:
    # ReplicaSets and ConfigMaps append suffixes; 53 leaves room inside the 63-char limit.
    name = k8s_name("a" * 52 + "_" + "b" * 40)
    assert len(name) <= 53
    assert DNS_LABEL.fullmatch(name)
    assert not name.endswith("-")


@pytest.mark.parametrize("model", ["___", "", "!!!"])
def test_a_name_with_nothing_usable_is_refused(model: str) -> None:
    with pytest.raises(DeployError, match="cannot derive a Kubernetes name"):
        k8s_name(model)


def test_each_environment_gets_its_own_namespace_unless_one_is_given() -> None:
    assert make_spec(environment=Stage.DEV).ns == "modelfleet-dev"
    assert make_spec(environment=Stage.PROD).ns == "modelfleet-prod"
    assert make_spec(namespace="team-a").ns == "team-a"


def test_selector_labels_stay_put_across_versions_and_variants() -> None:
    v3, v4 = make_spec(), make_spec(version=4, variant="fp16")
    # A Deployment's selector is immutable: it must not mention the version.
    assert v3.labels == v4.labels
    assert v3.version_labels != v4.version_labels
    assert v4.version_labels["app.kubernetes.io/version"] == "4"
    assert v4.version_labels["modelfleet.io/variant"] == "fp16"
    assert v3.labels.items() <= v3.version_labels.items()


def test_the_same_model_in_two_environments_never_shares_a_selector() -> None:
    qa, prod = make_spec(environment=Stage.QA), make_spec(environment=Stage.PROD)
    assert qa.labels != prod.labels


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variant": "fp8"}, "unknown variant 'fp8'; use one of fp32, fp16, int8"),
        ({"artifact_sha256": "abc"}, "artifact digest 'abc' is not a sha256"),
        ({"artifact_sha256": "AB" * 32}, "is not a sha256"),
        ({"port": 0}, "port must be 1-65535, got 0"),
        ({"port": 70000}, "port must be 1-65535"),
        ({"drain_seconds": -1}, "drain time must be 0 s or more"),
        ({"replicas": 0}, "replicas must be at least 1, got 0"),
        ({"autoscale": (0, 3)}, r"invalid autoscale range 0:3; write MIN:MAX"),
        ({"autoscale": (4, 3)}, "invalid autoscale range 4:3"),
        ({"target_cpu": 0}, "target CPU must be 1-100 percent, got 0"),
        ({"queue_target": 0}, "queue target must be above 0"),
        ({"gpu": -2}, "--gpu must be 0 or more, got -2"),
        ({"cpu": "0"}, "invalid CPU request '0'"),
        ({"cpu": "1.5 cores"}, "invalid CPU request"),
        ({"memory": "1GB"}, "invalid memory request '1GB'"),
        ({"cpu_limit": "x"}, "invalid CPU limit 'x'"),
        ({"memory": "3Gi", "memory_limit": "2Gi"}, "raise --memory-limit or lower --memory"),
        ({"cpu": "2500m", "cpu_limit": "2"}, "CPU request 2500m is above its limit 2"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(DeployError, match=message) as caught:
        make_spec(**overrides)
    assert isinstance(caught.value, ModelfleetError)  # the CLI prints it as one line


@pytest.mark.parametrize(
    "overrides",
    [
        {"cpu": "2", "cpu_limit": "2"},  # a request may equal its limit
        {"cpu": "250m", "cpu_limit": None, "memory_limit": None},  # no limits at all
        {"memory": "1024Mi", "memory_limit": "1Gi"},  # same amount, different units
        {"autoscale": (3, 3)},
        {"drain_seconds": 0, "target_cpu": 100, "gpu": 0},
    ],
)
def test_edge_values_that_kubernetes_accepts_are_accepted(overrides: dict[str, object]) -> None:
    make_spec(**overrides)


@pytest.mark.parametrize("value", ["500m", "2", "0.5", "512Mi", "2Gi", "64k"])
def test_quantities_kubernetes_understands_pass(value: str) -> None:
    assert check_quantity(value, "CPU request") == value


@pytest.mark.parametrize("value", ["", "-1", "1.", "2 Gi", "lots", "1gb", "0m"])
def test_quantities_kubernetes_refuses_are_named(value: str) -> None:
    with pytest.raises(DeployError, match=f"invalid memory limit '{re.escape(value)}'"):
        check_quantity(value, "memory limit")


@pytest.mark.parametrize(
    ("text", "bounds"), [("2:10", (2, 10)), ("1:1", (1, 1)), (None, None), ("", None)]
)
def test_autoscale_flags_are_parsed(text: str | None, bounds: tuple[int, int] | None) -> None:
    assert parse_autoscale(text) == bounds


@pytest.mark.parametrize("text", ["ten", "2-10", "2:", ":3", "-1:3", "2:x"])
def test_bad_autoscale_flags_show_the_expected_form(text: str) -> None:
    with pytest.raises(DeployError, match=r"invalid --autoscale .*write MIN:MAX, e\.g\. 2:10"):
        parse_autoscale(text)
