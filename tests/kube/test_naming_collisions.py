"""Different models get different Kubernetes objects; plain names keep the objects they have."""

from __future__ import annotations

import re

import pytest

from modelfleet.kube import k8s_name
from tests.deploy.specs import make_spec, rendered

# The API server's rule for a DNS-1123 label (apimachinery IsDNS1123Label), and our cap.
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NAME_MAX = 53

# Model names the registry keeps apart, but whose Kubernetes names used to coincide.
COLLIDING = [
    "churn-a",
    "churn_a",
    "Churn-A",
    "churn.a",
    "churn-a-",
    "churn--a",
    "churn",
    "churn.",
    "a" * 60,
    "a" * 60 + "b",
    "a" * 53 + "_x",
    "a" * 53,
]


def test_colliding_names_become_distinct_valid_labels() -> None:
    names = {model: k8s_name(model) for model in COLLIDING}
    assert len(set(names.values())) == len(COLLIDING), names
    for name in names.values():
        assert DNS_1123_LABEL.fullmatch(name), name
        assert len(name) <= NAME_MAX, name


@pytest.mark.parametrize("model", ["churn", "churn-a", "churn--a", "7", "fraud-v2", "a" * 53])
def test_names_that_are_already_labels_are_kept(model: str) -> None:
    assert k8s_name(model) == model


@pytest.mark.parametrize(
    ("model", "readable"),
    [("Churn_Model", "churn-model"), ("churn.", "churn"), ("a" * 60, "a" * 44)],
)
def test_a_changed_name_keeps_its_readable_part_and_a_stable_suffix(
    model: str, readable: str
) -> None:
    name = k8s_name(model)
    assert re.fullmatch(rf"{readable}-[0-9a-f]{{8}}", name), name
    assert k8s_name(model) == name  # stable across calls and processes (a digest, not a salt)
    assert k8s_name(name) == name  # already a label: kept, so re-deriving changes nothing


def test_two_models_deployed_side_by_side_own_separate_objects() -> None:
    first, second = rendered(make_spec(model="churn-a")), rendered(make_spec(model="Churn_A"))
    for kind in ("Deployment", "Service", "ConfigMap"):
        one, other = first[kind]["metadata"]["name"], second[kind]["metadata"]["name"]
        assert one != other, kind
    assert first["Deployment"]["metadata"]["name"] == "churn-a"
    selector, other_selector = (
        r["Deployment"]["spec"]["selector"]["matchLabels"] for r in (first, second)
    )
    assert selector != other_selector  # neither Service picks up the other model's pods
