"""Typed models of the custom resources modelfleet renders (Prometheus operator, KServe).

The Kubernetes client ships no models for custom resources, so these are small pydantic
models with the fields modelfleet sets; unknown fields are refused, like a strict schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelfleet.deploy.kinds import Container, Volume
from modelfleet.deploy.pod import METRICS_PATH, PORT_NAME, container, tmp_volume
from modelfleet.deploy.spec import DeploySpec
from modelfleet.monitor import alert_rules


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(_Model):
    """ObjectMeta subset."""

    name: str
    namespace: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] | None = None


class Endpoint(_Model):
    """A ServiceMonitor endpoint."""

    port: str
    path: str = METRICS_PATH
    interval: str = "15s"
    scrape_timeout: str = Field("10s", alias="scrapeTimeout")


class Selector(_Model):
    """A label selector."""

    match_labels: dict[str, str] = Field(alias="matchLabels")


class ServiceMonitorSpec(_Model):
    """monitoring.coreos.com/v1 ServiceMonitor spec."""

    selector: Selector
    endpoints: list[Endpoint]


class ServiceMonitor(_Model):
    """Prometheus operator: scrape the Service's /metrics."""

    api_version: str = Field("monitoring.coreos.com/v1", alias="apiVersion")
    kind: str = "ServiceMonitor"
    metadata: Metadata
    spec: ServiceMonitorSpec


class RuleGroup(_Model):
    """A Prometheus rule group."""

    name: str
    rules: list[dict[str, Any]]


class PrometheusRuleSpec(_Model):
    """monitoring.coreos.com/v1 PrometheusRule spec."""

    groups: list[RuleGroup]


class PrometheusRule(_Model):
    """Prometheus operator: the model's alert rules."""

    api_version: str = Field("monitoring.coreos.com/v1", alias="apiVersion")
    kind: str = "PrometheusRule"
    metadata: Metadata
    spec: PrometheusRuleSpec


class ModelFormat(_Model):
    """KServe model format."""

    name: str = "onnx"


class PredictorModel(_Model):
    """KServe predictor.model: a custom container running the modelfleet image."""

    model_format: ModelFormat = Field(default_factory=ModelFormat, alias="modelFormat")
    protocol_version: str = Field("v2", alias="protocolVersion")


class Predictor(_Model):
    """KServe predictor with one container (the modelfleet image)."""

    min_replicas: int = Field(alias="minReplicas")
    max_replicas: int = Field(alias="maxReplicas")
    containers: list[Container]
    volumes: list[Volume] = Field(default_factory=list)


class InferenceServiceSpec(_Model):
    """serving.kserve.io/v1beta1 InferenceService spec."""

    predictor: Predictor


class InferenceService(_Model):
    """KServe: the same image as an InferenceService (KServe manages scaling and routing)."""

    api_version: str = Field("serving.kserve.io/v1beta1", alias="apiVersion")
    kind: str = "InferenceService"
    metadata: Metadata
    spec: InferenceServiceSpec


def _metadata(spec: DeploySpec, **extra: Any) -> Metadata:
    return Metadata(name=spec.name, namespace=spec.ns, labels=dict(spec.labels), **extra)


def service_monitor(spec: DeploySpec) -> ServiceMonitor:
    """Scrape the model's Service every 15 s."""
    return ServiceMonitor(
        metadata=_metadata(spec),
        spec=ServiceMonitorSpec(
            selector=Selector(match_labels=dict(spec.labels)),
            endpoints=[Endpoint(port=PORT_NAME)],
        ),
    )


def prometheus_rule(spec: DeploySpec) -> PrometheusRule:
    """The alert rules for this model (latency, errors, queue, load failures …)."""
    groups = alert_rules(model=spec.model, latency_p99_ms=spec.latency_p99_ms)
    return PrometheusRule(
        metadata=_metadata(spec),
        spec=PrometheusRuleSpec(groups=[RuleGroup(**g) for g in groups]),
    )


def inference_service(spec: DeploySpec) -> InferenceService:
    """A KServe InferenceService running the same image (V2 protocol on port 8080)."""
    # KServe owns the pod and expects this container name; the image's baked serve config
    # is used (no ConfigMap mount), and /tmp stays writable.
    server = container(spec, name="kserve-container", serve_config=False)
    low, high = spec.autoscale or (spec.replicas, spec.replicas)
    return InferenceService(
        metadata=_metadata(
            spec, annotations={"modelfleet.io/model": f"{spec.model}:{spec.version}"}
        ),
        spec=InferenceServiceSpec(
            predictor=Predictor(
                min_replicas=low, max_replicas=high, containers=[server], volumes=[tmp_volume()]
            )
        ),
    )
