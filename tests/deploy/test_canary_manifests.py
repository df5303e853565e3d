"""The canary's objects: valid for Kubernetes, labelled so the model's Service sends it a
share of the traffic, selecting only its own pods, and leaving the stable's selector as
``deploy`` made it (a Deployment's selector cannot change)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.deploy import (
    TRACK_LABEL,
    canary_name,
    render_canary,
    to_dict,
    track_selectors,
    write,
)
from modelfleet.errors import DeployError
from modelfleet.refs import Stage
from tests.deploy.specs import make_spec, rendered, validate


def canary_objects(**overrides: Any) -> dict[str, dict[str, Any]]:
    """The canary's objects for a spec with ``overrides``, keyed by kind."""
    replicas = overrides.pop("canary_replicas", 1)
    objects = render_canary(make_spec(**overrides), replicas)
    return {o["kind"]: o for o in (to_dict(obj) for obj in objects)}


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether a label selector of ``k=v`` and ``k!=v`` terms selects ``labels``."""
    for term in selector.split(","):
        if "!=" in term:
            key, value = term.split("!=")
            if labels.get(key) == value:
                return False
        else:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
    return True


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return match_labels.items() <= labels.items()


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("gpu", [0, 1])
def test_the_canary_objects_are_valid_kubernetes(gpu: int) -> None:
    objects = canary_objects(gpu=gpu, canary_replicas=2)
    assert set(objects) == {"ConfigMap", "Deployment"}
    for data in objects.values():
        validate(data)


def test_the_service_sends_the_canary_traffic_beside_the_stable() -> None:
    spec = make_spec(version=4)
    stable = rendered(make_spec(version=3))
    canary = canary_objects(version=4)["Deployment"]
    service = stable["Service"]["spec"]["selector"]
    assert selects(service, pod_labels(stable["Deployment"]))
    assert selects(service, pod_labels(canary))
    # The disruption budget, network policy and ServiceMonitor cover the canary's pods too.
    assert selects(
        stable["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], pod_labels(canary)
    )
    assert selects(
        stable["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"], pod_labels(canary)
    )
    assert pod_labels(canary)[TRACK_LABEL] == "canary"
    assert pod_labels(canary)["app.kubernetes.io/version"] == "4"
    assert canary["metadata"]["name"] == canary_name(spec.name) == f"{spec.name}-canary"


def test_each_deployment_owns_only_its_own_track() -> None:
    stable = rendered(make_spec(version=3))["Deployment"]
    canary = canary_objects(version=4)["Deployment"]
    canary_selector = canary["spec"]["selector"]["matchLabels"]
    assert selects(canary_selector, pod_labels(canary))
    assert not selects(canary_selector, pod_labels(stable))
    # The stable's selector is what deploy has always rendered: no release changes it.
    assert stable["spec"]["selector"]["matchLabels"] == make_spec().labels
    assert TRACK_LABEL not in pod_labels(stable)


def test_track_selectors_split_the_models_pods_between_the_tracks() -> None:
    spec = make_spec(version=4)
    stable_pods = pod_labels(rendered(make_spec(version=3))["Deployment"])
    canary_pods = pod_labels(canary_objects(version=4)["Deployment"])
    other_env = pod_labels(rendered(make_spec(environment=Stage.QA))["Deployment"])
    selectors = track_selectors(spec)
    assert matches(selectors["stable"], stable_pods)
    assert not matches(selectors["stable"], canary_pods)
    assert matches(selectors["canary"], canary_pods)
    assert not matches(selectors["canary"], stable_pods)
    assert not any(matches(s, other_env) for s in selectors.values())


def test_traffic_share_is_the_canarys_replica_count_and_no_autoscaler_runs_it() -> None:
    canary = canary_objects(autoscale=(2, 10), canary_replicas=2)["Deployment"]
    assert canary["spec"]["replicas"] == 2  # the stable's autoscaler owns only the stable


def test_the_canary_reads_the_config_a_promoted_stable_will_read() -> None:
    spec = make_spec(version=4)
    canary = canary_objects(version=4)
    promoted = rendered(spec)
    assert canary["ConfigMap"] == promoted["ConfigMap"]
    volumes = canary["Deployment"]["spec"]["template"]["spec"]["volumes"]
    (mounted,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    assert mounted == promoted["ConfigMap"]["metadata"]["name"]
    # The pod itself is the stable's, version for version: image, probes, hardening.
    canary_pod = canary["Deployment"]["spec"]["template"]["spec"]
    assert canary_pod == promoted["Deployment"]["spec"]["template"]["spec"]


def test_the_longest_model_name_still_makes_a_dns_label() -> None:
    canary = canary_objects(model="Model_" * 16)["Deployment"]  # a 96-character name
    assert len(canary["metadata"]["name"]) <= 63
    validate(canary)


def test_at_least_one_canary_pod() -> None:
    with pytest.raises(DeployError, match="--canary-replicas must be at least 1, got 0"):
        render_canary(make_spec(), 0)


def test_dry_run_files_parse_back(tmp_path: Path) -> None:
    files = write(render_canary(make_spec(), 1), tmp_path / "canary")
    assert [f.name for f in files] == ["configmap.yaml", "deployment.yaml"]
    deployment = yaml.safe_load((tmp_path / "canary" / "deployment.yaml").read_text())
    assert deployment["metadata"]["name"].endswith("-canary")
    validate(deployment)
