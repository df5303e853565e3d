"""Kubernetes objects for a deployed model, built as typed objects (never YAML templates).

Core kinds are the ``TypedDict`` shapes of :mod:`modelfleet.deploy.kinds`, already in API
form; the Prometheus operator and KServe kinds, which have no published Python models, are
small pydantic models in :mod:`modelfleet.deploy.crds`. The pod both run is in
:mod:`modelfleet.deploy.pod`.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import yaml
from pydantic import BaseModel, ValidationError

from modelfleet.deploy.crds import (
    InferenceService,
    PrometheusRule,
    ServiceMonitor,
    inference_service,
    prometheus_rule,
    service_monitor,
)
from modelfleet.deploy.kinds import (
    ConfigMap,
    Deployment,
    HorizontalPodAutoscaler,
    LabelSelector,
    MetricSpec,
    Namespace,
    NetworkPolicy,
    ObjectMeta,
    PodDisruptionBudget,
    Secret,
    Service,
)
from modelfleet.deploy.pod import METRICS_PATH, PORT_NAME, pod_spec
from modelfleet.deploy.spec import STATE_KEY, DeploySpec, check_state_url
from modelfleet.errors import DeployError

if TYPE_CHECKING:
    from modelfleet.serving import ServeConfig

Manifest: TypeAlias = (
    Namespace
    | Secret
    | ConfigMap
    | Deployment
    | Service
    | HorizontalPodAutoscaler
    | PodDisruptionBudget
    | NetworkPolicy
    | ServiceMonitor
    | PrometheusRule
    | InferenceService
)
"""Any object :func:`render` returns."""

CONFIG_LABEL = "modelfleet.io/serve-config"
# Seconds a draining server keeps answering kept-alive connections with 'Connection: close'
# after the preStop pause, so their clients reconnect to other replicas.
LAME_DUCK_SECONDS = 5


def _meta(spec: DeploySpec, name: str | None = None) -> ObjectMeta:
    return {"name": name or spec.name, "namespace": spec.ns, "labels": dict(spec.labels)}


def _selector(spec: DeploySpec) -> LabelSelector:
    return {"matchLabels": dict(spec.labels)}


def namespace(spec: DeploySpec) -> Namespace:
    """One namespace per environment, held to the 'restricted' Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": spec.ns,
            "labels": {
                "modelfleet.io/environment": spec.environment.value,
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }


def serve_config(spec: DeploySpec) -> ServeConfig:
    """The serve config the pods read (mounted over the image's)."""
    # Imported here: build.context pulls in the registry and the server's settings, which
    # rendering anything but the ConfigMap never needs.
    from modelfleet.build import IMAGE_MONITORING, image_model
    from modelfleet.serving import ServeConfig, ServerConfig

    try:
        model = image_model(
            name=spec.model,
            sha256=spec.artifact_sha256,
            version=str(spec.version),
            variant=spec.variant,
            metrics=spec.metrics,
            profile=spec.profile,
        )
        server = ServerConfig(
            host="0.0.0.0",  # noqa: S104 - inside the pod
            port=spec.port,
            drain_timeout_s=spec.drain_seconds,
            lame_duck_s=LAME_DUCK_SECONDS,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DeployError(
            f"the serve config for {spec.model}:{spec.version} is invalid: {problems}"
        ) from exc
    return ServeConfig(server=server, monitoring=IMAGE_MONITORING, models=(model,))


def serve_yaml(spec: DeploySpec) -> str:
    """The ConfigMap's ``serve.yaml``: written exactly as an image carries its own."""
    from modelfleet.build import serve_yaml as dump

    return dump(serve_config(spec))


def config_map_name(spec: DeploySpec) -> str:
    """``NAME-serve-<digest>``: a new config is a new object, so every pod template (and a
    rollback to it) keeps reading the config it was made with."""
    digest = hashlib.sha256(serve_yaml(spec).encode()).hexdigest()[:10]
    return f"{spec.name}-serve-{digest}"


def config_map(spec: DeploySpec) -> ConfigMap:
    """The serve config mounted over the image's (batching, limits, cache can change here)."""
    meta = _meta(spec, config_map_name(spec))
    meta["labels"][CONFIG_LABEL] = spec.name
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"serve.yaml": serve_yaml(spec)},
    }


def deployment(spec: DeploySpec) -> Deployment:
    """The model's pods: hardened, probed, drained, spread across nodes."""
    annotations = {
        "modelfleet.io/artifact-sha256": spec.artifact_sha256,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.port),
        "prometheus.io/path": METRICS_PATH,
    }
    made: Deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(spec),
            "annotations": {"modelfleet.io/model": f"{spec.model}:{spec.version}"},
        },
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": _selector(spec),
            # One extra pod at a time and none taken away: capacity never dips in a rollout.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": dict(spec.version_labels), "annotations": annotations},
                "spec": pod_spec(spec, config_map=config_map_name(spec)),
            },
        },
    }
    if not spec.autoscale:  # the autoscaler owns the count; a fixed one would fight it
        made["spec"]["replicas"] = spec.replicas
    return made


def service(spec: DeploySpec) -> Service:
    """ClusterIP Service in front of the pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(spec.labels),
            "ports": [{"name": PORT_NAME, "port": 80, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def autoscaler(spec: DeploySpec) -> HorizontalPodAutoscaler:
    """autoscaling/v2 HPA on CPU, and on queue depth when a custom metric target is given."""
    if spec.autoscale is None:
        raise DeployError("an autoscaler needs --autoscale MIN:MAX")
    metrics: list[MetricSpec] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": spec.target_cpu},
            },
        }
    ]
    if spec.queue_target is not None:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "modelfleet_queue_depth"},
                    "target": {"type": "AverageValue", "averageValue": str(spec.queue_target)},
                },
            }
        )
    low, high = spec.autoscale
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": metrics,
        },
    }


def disruption_budget(spec: DeploySpec) -> PodDisruptionBudget:
    """Voluntary evictions keep at least one pod (or all but one) serving."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec),
        "spec": {"maxUnavailable": 1, "selector": _selector(spec)},
    }


def network_policy(spec: DeploySpec) -> NetworkPolicy:
    """Only the HTTP port is reachable, and only from inside the cluster."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec),
        "spec": {
            "podSelector": _selector(spec),
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {}}],
                    "ports": [{"port": PORT_NAME, "protocol": "TCP"}],
                }
            ],
        },
    }


def state_secret(spec: DeploySpec, url: str) -> Secret:
    """The Secret holding the shared state URL the pods read (``spec.state_secret``)."""
    if not spec.state_secret:
        raise DeployError("a state URL needs spec.state_secret to name its Secret")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, spec.state_secret),
        "type": "Opaque",
        "stringData": {STATE_KEY: check_state_url(url)},
    }


def render(
    spec: DeploySpec, *, kserve: bool = False, state_url: str | None = None
) -> list[Manifest]:
    """Every object, in the order they should be applied.

    With ``state_url``, a Secret holding it comes first (pods read it as
    ``MODELFLEET_STATE_URL``); without, ``spec.state_secret`` names one that exists.
    """
    secrets: list[Manifest] = [state_secret(spec, state_url)] if state_url else []
    if kserve:
        return [namespace(spec), *secrets, inference_service(spec)]
    objects: list[Manifest] = [
        namespace(spec),
        *secrets,
        config_map(spec),
        deployment(spec),
        service(spec),
    ]
    if spec.autoscale:
        objects.append(autoscaler(spec))
    objects += [
        disruption_budget(spec),
        network_policy(spec),
        service_monitor(spec),
        prometheus_rule(spec),
    ]
    return objects


def to_dict(obj: Manifest) -> dict[str, Any]:
    """A plain, independent API-shaped dict (camelCase keys, no nulls) of a :data:`Manifest`."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(by_alias=True, exclude_none=True)
    # a core kind: already API-shaped; a copy callers may change
    return {str(key): copy.deepcopy(value) for key, value in obj.items()}


_FILE_NAMES = {
    "Namespace": "namespace.yaml",
    "ConfigMap": "configmap.yaml",
    "Secret": "secret.yaml",
    "Deployment": "deployment.yaml",
    "Service": "service.yaml",
    "HorizontalPodAutoscaler": "hpa.yaml",
    "PodDisruptionBudget": "pdb.yaml",
    "NetworkPolicy": "networkpolicy.yaml",
    "ServiceMonitor": "servicemonitor.yaml",
    "PrometheusRule": "prometheusrule.yaml",
    "InferenceService": "inferenceservice.yaml",
}


def write(objects: list[Manifest], out: Path) -> list[Path]:
    """One file per kind plus a kustomization.yaml listing them (kustomize-friendly)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for obj in objects:
            data = to_dict(obj)
            path = out / _FILE_NAMES[data["kind"]]
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            if data["kind"] == "Secret":
                path.chmod(0o600)  # it holds a password: readable by its owner only
            written.append(path)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [p.name for p in written],
        }
        (out / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    except OSError as exc:
        raise DeployError(
            f"cannot write manifests to {out}: {exc.strerror}", hint="choose a writable --out"
        ) from exc
    return written
