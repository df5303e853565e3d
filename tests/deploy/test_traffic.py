"""Traffic and capacity: the Service reaches the pods, the autoscaler's bounds, the disruption
budget and the network policy select exactly the model's pods, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.deploy.manifests import autoscaler, to_dict
from modelfleet.errors import DeployError
from modelfleet.refs import Stage
from tests.deploy.specs import make_spec, pod_of, rendered, validate


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def _pod_labels(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_selector_picks_the_models_pods() -> None:
    objects = rendered(make_spec(autoscale=(2, 5)))
    pods = _pod_labels(objects)
    assert _selects(objects["Deployment"]["spec"]["selector"]["matchLabels"], pods)
    assert _selects(objects["Service"]["spec"]["selector"], pods)
    assert _selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], pods)
    assert _selects(objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"], pods)


def test_selectors_never_pick_another_environments_pods() -> None:
    qa = rendered(make_spec(environment=Stage.QA, namespace="shared"))
    prod = rendered(make_spec(environment=Stage.PROD, namespace="shared"))
    assert not _selects(qa["Service"]["spec"]["selector"], _pod_labels(prod))
    assert not _selects(prod["Service"]["spec"]["selector"], _pod_labels(qa))


def test_the_service_forwards_port_80_to_the_pods_named_http_port() -> None:
    objects = rendered(make_spec(port=9000))
    (port,) = objects["Service"]["spec"]["ports"]
    assert objects["Service"]["spec"]["type"] == "ClusterIP"  # not exposed outside the cluster
    assert (port["port"], port["protocol"]) == (80, "TCP")
    container_ports = {
        p["name"]: p["containerPort"] for p in pod_of(objects)["containers"][0]["ports"]
    }
    assert container_ports[port["targetPort"]] == 9000


def test_fixed_replicas_without_an_autoscaler() -> None:
    objects = rendered(make_spec(replicas=4))
    assert objects["Deployment"]["spec"]["replicas"] == 4
    assert "HorizontalPodAutoscaler" not in objects


def test_the_autoscaler_owns_the_replica_count_within_its_bounds() -> None:
    objects = rendered(make_spec(replicas=4, autoscale=(3, 12)))
    hpa = objects["HorizontalPodAutoscaler"]
    assert "replicas" not in objects["Deployment"]["spec"]  # an apply would reset the HPA
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": objects["Deployment"]["metadata"]["name"],
    }
    assert hpa["metadata"]["namespace"] == objects["Deployment"]["metadata"]["namespace"]
    validate(hpa)


def test_without_a_queue_target_the_autoscaler_scales_on_cpu_alone() -> None:
    hpa = to_dict(autoscaler(make_spec(autoscale=(1, 3), target_cpu=55)))
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 55},
            },
        }
    ]


def test_a_queue_target_adds_the_servers_queue_depth_metric() -> None:
    hpa = to_dict(autoscaler(make_spec(autoscale=(1, 3), queue_target=12.5)))
    queue = hpa["spec"]["metrics"][1]
    assert queue["type"] == "Pods"
    # The metric the server exports (modelfleet.serving.metrics) under this name.
    assert queue["pods"]["metric"] == {"name": "modelfleet_queue_depth"}
    assert queue["pods"]["target"] == {"type": "AverageValue", "averageValue": "12.5"}
    validate(hpa)


def test_an_autoscaler_without_bounds_is_refused() -> None:
    with pytest.raises(DeployError, match="an autoscaler needs --autoscale MIN:MAX"):
        autoscaler(make_spec())


def test_voluntary_evictions_take_one_pod_at_a_time() -> None:
    objects = rendered(make_spec())
    pdb = objects["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]  # with one replica, a drain still proceeds
    validate(pdb)


def test_rollouts_add_a_pod_before_taking_one_away() -> None:
    spec = rendered(make_spec())["Deployment"]["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert spec["revisionHistoryLimit"] >= 2  # a rollback has somewhere to go


def test_only_the_http_port_is_open_and_only_from_inside_the_cluster() -> None:
    objects = rendered(make_spec())
    policy = objects["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"namespaceSelector": {}}]  # any namespace, no ipBlock
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    named = {p["name"] for p in pod_of(objects)["containers"][0]["ports"]}
    assert rule["ports"][0]["port"] in named
    validate(objects["NetworkPolicy"])


def test_the_deployment_records_which_graph_and_version_it_runs() -> None:
    deployment = rendered(make_spec())["Deployment"]
    assert deployment["metadata"]["annotations"] == {"modelfleet.io/model": "Churn_Model:3"}
    template = deployment["spec"]["template"]["metadata"]
    assert template["annotations"]["modelfleet.io/artifact-sha256"] == "ab" * 32
    assert template["annotations"]["prometheus.io/scrape"] == "true"
    assert template["labels"]["app.kubernetes.io/version"] == "3"
    assert template["labels"]["modelfleet.io/variant"] == "int8"
