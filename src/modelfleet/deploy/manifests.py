"""Kubernetes objects for a deployed model, built from typed models (never YAML templates).

Core kinds use the official client's models and are serialized by its ApiClient; the
Prometheus operator and KServe kinds, for which the client has no models, are small
pydantic models in :mod:`modelfleet.deploy.crds`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from modelfleet.deploy.crds import (
    InferenceService,
    PrometheusRule,
    ServiceMonitor,
    inference_service,
    prometheus_rule,
    service_monitor,
)
from modelfleet.deploy.spec import DeploySpec
from modelfleet.errors import DeployError, MissingDependencyError

CONFIG_MOUNT = "/etc/modelfleet"


def _client() -> Any:
    try:
        from kubernetes import client
    except ImportError as exc:
        raise MissingDependencyError("kubernetes", "k8s", purpose="render manifests") from exc
    return client


def _meta(spec: DeploySpec, name: str | None = None, **extra: Any) -> Any:
    k = _client()
    return k.V1ObjectMeta(
        name=name or spec.name, namespace=spec.ns, labels=dict(spec.labels), **extra
    )


def namespace(spec: DeploySpec) -> Any:
    """One namespace per environment."""
    k = _client()
    return k.V1Namespace(
        api_version="v1",
        kind="Namespace",
        metadata=k.V1ObjectMeta(
            name=spec.ns,
            labels={
                "modelfleet.io/environment": spec.environment.value,
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        ),
    )


CONFIG_LABEL = "modelfleet.io/serve-config"


def serve_config(spec: DeploySpec) -> dict[str, Any]:
    """The serve config the pods read (mounted over the image's)."""
    from modelfleet.build.context import IMAGE_MONITORING, image_model

    model = image_model(
        name=spec.model,
        sha256=spec.artifact_sha256,
        version=str(spec.version),
        variant=spec.variant,
        metrics=spec.metrics,
        profile=spec.profile,
    )
    return {
        "server": {
            "host": "0.0.0.0",  # noqa: S104 - inside the pod
            "port": spec.port,
            "drain_timeout_s": spec.drain_seconds,
            # After the preStop pause the endpoint is gone; clients still holding a
            # kept-alive connection get answers with 'Connection: close' and reconnect.
            "lame_duck_s": 5,
        },
        "monitoring": dict(IMAGE_MONITORING),
        "models": [model],
    }


def config_map_name(spec: DeploySpec) -> str:
    """``NAME-serve-<digest>``: a new config is a new object, so every pod template (and a
    rollback to it) keeps reading the config it was made with."""
    text = yaml.safe_dump(serve_config(spec), sort_keys=True)
    return f"{spec.name}-serve-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def config_map(spec: DeploySpec) -> Any:
    """The serve config mounted over the image's (batching, limits, cache can change here)."""
    k = _client()
    meta = _meta(spec, config_map_name(spec))
    meta.labels[CONFIG_LABEL] = spec.name
    return k.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=meta,
        data={"serve.yaml": yaml.safe_dump(serve_config(spec), sort_keys=True)},
    )


def _container(spec: DeploySpec) -> Any:
    k = _client()
    requests = {"cpu": spec.cpu, "memory": spec.memory}
    limits: dict[str, str] = {}
    if spec.cpu_limit:
        limits["cpu"] = spec.cpu_limit
    if spec.memory_limit:
        limits["memory"] = spec.memory_limit
    if spec.gpu:
        limits["nvidia.com/gpu"] = str(spec.gpu)
        requests["nvidia.com/gpu"] = str(spec.gpu)

    def probe(path: str, period: int, failures: int) -> Any:
        return k.V1Probe(
            http_get=k.V1HTTPGetAction(path=path, port="http"),
            period_seconds=period,
            timeout_seconds=2,
            failure_threshold=failures,
        )

    return k.V1Container(
        name="server",
        image=spec.image,
        image_pull_policy="IfNotPresent",
        ports=[k.V1ContainerPort(name="http", container_port=spec.port, protocol="TCP")],
        env=[k.V1EnvVar(name="MODELFLEET_ENVIRONMENT", value=spec.environment.value)],
        resources=k.V1ResourceRequirements(requests=requests, limits=limits or None),
        readiness_probe=probe("/v2/health/ready", 5, 2),
        liveness_probe=probe("/v2/health/live", 10, 3),
        startup_probe=probe("/v2/health/ready", 2, 60),
        # Keep serving while the endpoint is removed from the Service, then drain on SIGTERM.
        lifecycle=k.V1Lifecycle(
            pre_stop=k.V1LifecycleHandler(_exec=k.V1ExecAction(command=["sleep", "5"]))
        ),
        security_context=k.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=k.V1Capabilities(drop=["ALL"]),
        ),
        volume_mounts=[
            k.V1VolumeMount(name="tmp", mount_path="/tmp"),  # noqa: S108 - the only writable path
            k.V1VolumeMount(name="serve-config", mount_path=CONFIG_MOUNT, read_only=True),
        ],
    )


def deployment(spec: DeploySpec) -> Any:
    """The model's pods: hardened, probed, drained, spread across nodes."""
    k = _client()
    pod = k.V1PodSpec(
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=spec.drain_seconds + 20,
        security_context=k.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            fs_group=10001,
            seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[_container(spec)],
        volumes=[
            k.V1Volume(
                name="tmp", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit="64Mi")
            ),
            k.V1Volume(
                name="serve-config",
                config_map=k.V1ConfigMapVolumeSource(name=config_map_name(spec)),
            ),
        ],
        topology_spread_constraints=[
            k.V1TopologySpreadConstraint(
                max_skew=1,
                topology_key="kubernetes.io/hostname",
                when_unsatisfiable="ScheduleAnyway",
                label_selector=k.V1LabelSelector(match_labels=dict(spec.labels)),
            )
        ],
    )
    if spec.gpu:
        pod.node_selector = {"nvidia.com/gpu.present": "true"}
        pod.tolerations = [
            k.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ]
    annotations = {
        "modelfleet.io/artifact-sha256": spec.artifact_sha256,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.port),
        "prometheus.io/path": "/metrics",
    }
    return k.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(spec, annotations={"modelfleet.io/model": f"{spec.model}:{spec.version}"}),
        spec=k.V1DeploymentSpec(
            replicas=None if spec.autoscale else spec.replicas,
            revision_history_limit=5,
            selector=k.V1LabelSelector(match_labels=dict(spec.labels)),
            strategy=k.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            template=k.V1PodTemplateSpec(
                metadata=k.V1ObjectMeta(labels=dict(spec.version_labels), annotations=annotations),
                spec=pod,
            ),
        ),
    )


def service(spec: DeploySpec) -> Any:
    """ClusterIP Service in front of the pods."""
    k = _client()
    return k.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(spec),
        spec=k.V1ServiceSpec(
            type="ClusterIP",
            selector=dict(spec.labels),
            ports=[k.V1ServicePort(name="http", port=80, target_port="http", protocol="TCP")],
        ),
    )


def autoscaler(spec: DeploySpec) -> Any:
    """autoscaling/v2 HPA on CPU, and on queue depth when a custom metric target is given."""
    k = _client()
    if spec.autoscale is None:
        raise DeployError("an autoscaler needs --autoscale MIN:MAX")
    metrics = [
        k.V2MetricSpec(
            type="Resource",
            resource=k.V2ResourceMetricSource(
                name="cpu",
                target=k.V2MetricTarget(type="Utilization", average_utilization=spec.target_cpu),
            ),
        )
    ]
    if spec.queue_target is not None:
        metrics.append(
            k.V2MetricSpec(
                type="Pods",
                pods=k.V2PodsMetricSource(
                    metric=k.V2MetricIdentifier(name="modelfleet_queue_depth"),
                    target=k.V2MetricTarget(
                        type="AverageValue", average_value=str(spec.queue_target)
                    ),
                ),
            )
        )
    return k.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2",
        kind="HorizontalPodAutoscaler",
        metadata=_meta(spec),
        spec=k.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=spec.name
            ),
            min_replicas=spec.autoscale[0],
            max_replicas=spec.autoscale[1],
            metrics=metrics,
        ),
    )


def disruption_budget(spec: DeploySpec) -> Any:
    """Voluntary evictions keep at least one pod (or all but one) serving."""
    k = _client()
    return k.V1PodDisruptionBudget(
        api_version="policy/v1",
        kind="PodDisruptionBudget",
        metadata=_meta(spec),
        spec=k.V1PodDisruptionBudgetSpec(
            max_unavailable=1, selector=k.V1LabelSelector(match_labels=dict(spec.labels))
        ),
    )


def network_policy(spec: DeploySpec) -> Any:
    """Only the HTTP port is reachable, and only from inside the cluster."""
    k = _client()
    return k.V1NetworkPolicy(
        api_version="networking.k8s.io/v1",
        kind="NetworkPolicy",
        metadata=_meta(spec),
        spec=k.V1NetworkPolicySpec(
            pod_selector=k.V1LabelSelector(match_labels=dict(spec.labels)),
            policy_types=["Ingress"],
            ingress=[
                k.V1NetworkPolicyIngressRule(
                    _from=[k.V1NetworkPolicyPeer(namespace_selector=k.V1LabelSelector())],
                    ports=[k.V1NetworkPolicyPort(port="http", protocol="TCP")],
                )
            ],
        ),
    )


def render(spec: DeploySpec, *, kserve: bool = False) -> list[Any]:
    """Every object, in the order they should be applied."""
    if kserve:
        return [namespace(spec), inference_service(spec)]
    objects: list[Any] = [
        namespace(spec),
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


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain API-shaped dict (camelCase keys, no nulls) of a client model or CRD model."""
    if isinstance(obj, ServiceMonitor | PrometheusRule | InferenceService):
        return obj.model_dump(by_alias=True, exclude_none=True)
    data: dict[str, Any] = _client().ApiClient().sanitize_for_serialization(obj)
    return data


_FILE_NAMES = {
    "Namespace": "namespace.yaml",
    "ConfigMap": "configmap.yaml",
    "Deployment": "deployment.yaml",
    "Service": "service.yaml",
    "HorizontalPodAutoscaler": "hpa.yaml",
    "PodDisruptionBudget": "pdb.yaml",
    "NetworkPolicy": "networkpolicy.yaml",
    "ServiceMonitor": "servicemonitor.yaml",
    "PrometheusRule": "prometheusrule.yaml",
    "InferenceService": "inferenceservice.yaml",
}


def write(objects: list[Any], out: Path) -> list[Path]:
    """One file per kind plus a kustomization.yaml listing them (kustomize-friendly)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for obj in objects:
            data = to_dict(obj)
            path = out / _FILE_NAMES[data["kind"]]
            path.write_text(yaml.safe_dump(data, sort_keys=False))
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
