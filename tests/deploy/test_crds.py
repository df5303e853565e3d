"""Custom resources: the ServiceMonitor scrapes the Service, the alert rules watch this model,
and the KServe InferenceService runs the same hardened container as the Deployment."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelfleet.deploy.crds import (
    Endpoint,
    InferenceService,
    Metadata,
    ServiceMonitor,
    inference_service,
    prometheus_rule,
    service_monitor,
)
from modelfleet.deploy.manifests import to_dict
from modelfleet.monitor.rules import alert_rules
from tests.deploy.specs import make_spec, pod_of, rendered, validate


def test_the_service_monitor_scrapes_the_services_named_port() -> None:
    objects = rendered(make_spec())
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "modelfleet-prod"
    # It finds the Service by label and the port by name.
    service = objects["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["port"] in port_names
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_scrape_finishes_before_the_next_one_starts() -> None:
    endpoint = to_dict(service_monitor(make_spec()))["spec"]["endpoints"][0]
    seconds = {key: int(endpoint[key].rstrip("s")) for key in ("interval", "scrapeTimeout")}
    assert seconds["scrapeTimeout"] < seconds["interval"]


def test_the_alert_rules_are_this_models_and_use_its_latency_budget() -> None:
    rule = to_dict(prometheus_rule(make_spec(latency_p99_ms=250)))
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    (group,) = rule["spec"]["groups"]
    assert group == alert_rules(model="Churn_Model", latency_p99_ms=250)[0]
    by_name = {r["alert"]: r for r in group["rules"]}
    assert 'model="Churn_Model"' in by_name["ModelfleetHighLatency"]["expr"]
    assert "0.25" in by_name["ModelfleetHighLatency"]["expr"]


def test_each_model_gets_its_own_rule_group() -> None:
    churn = to_dict(prometheus_rule(make_spec()))["spec"]["groups"][0]["name"]
    fraud = to_dict(prometheus_rule(make_spec(model="fraud")))["spec"]["groups"][0]["name"]
    assert churn != fraud


def test_the_kserve_variant_is_a_namespace_and_one_inference_service() -> None:
    objects = rendered(make_spec(), kserve=True)
    assert list(objects) == ["Namespace", "InferenceService"]
    isvc = objects["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["name"] == "churn-model-431ffbc9"
    assert isvc["metadata"]["namespace"] == "modelfleet-prod"
    assert isvc["metadata"]["annotations"] == {"modelfleet.io/model": "Churn_Model:3"}
    validate(objects["Namespace"])


@pytest.mark.parametrize(
    ("overrides", "bounds"),
    [({}, (2, 2)), ({"replicas": 3}, (3, 3)), ({"autoscale": (1, 6)}, (1, 6))],
)
def test_kserve_scales_within_the_asked_bounds(
    overrides: dict[str, Any], bounds: tuple[int, int]
) -> None:
    predictor = to_dict(inference_service(make_spec(**overrides)))["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == bounds


def test_kserve_runs_the_deployments_container_on_the_images_own_config() -> None:
    spec = make_spec(gpu=1)
    predictor = to_dict(inference_service(spec))["spec"]["predictor"]
    (kserve,) = predictor["containers"]
    deployed = pod_of(rendered(spec))["containers"][0]
    assert kserve["name"] == "kserve-container"  # the name KServe routes to
    assert [m["name"] for m in kserve["volumeMounts"]] == ["tmp"]  # no ConfigMap mount
    same = {k: v for k, v in kserve.items() if k not in ("name", "volumeMounts")}
    assert same == {k: v for k, v in deployed.items() if k not in ("name", "volumeMounts")}
    assert kserve["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["volumes"] == [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
    ]


def test_the_kserve_container_is_a_valid_kubernetes_container() -> None:
    predictor = to_dict(inference_service(make_spec()))["spec"]["predictor"]
    # No KServe schema ships offline: check the pod part against the core Pod schema.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kserve-check"},
        "spec": {"containers": predictor["containers"], "volumes": predictor["volumes"]},
    }
    validate(pod)


def test_custom_resource_models_refuse_fields_they_do_not_know() -> None:
    with pytest.raises(ValidationError, match="scrape_interval"):
        Endpoint(port="http", scrape_interval="5s")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="spec"):
        ServiceMonitor(metadata=Metadata(name="a", namespace="b"))  # type: ignore[call-arg]


def test_custom_resources_serialise_with_api_names_and_no_nulls() -> None:
    data = to_dict(inference_service(make_spec()))
    text = repr(data)
    for python_name in ("api_version", "min_replicas", "model_format", "None"):
        assert python_name not in text
    assert set(data) == {"apiVersion", "kind", "metadata", "spec"}
    assert InferenceService.model_validate(data) == inference_service(make_spec())
