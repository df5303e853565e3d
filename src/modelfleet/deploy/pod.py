"""The model's pod: one hardened, probed, draining server container and its volumes.

Shared by the Deployment (:mod:`modelfleet.deploy.manifests`) and the KServe
InferenceService (:mod:`modelfleet.deploy.crds`), which run the same image.
"""

from __future__ import annotations

from modelfleet.deploy.kinds import (
    Container,
    EnvVar,
    LabelSelector,
    PodSpec,
    Probe,
    SecretKeySelector,
    Toleration,
    Volume,
    VolumeMount,
)
from modelfleet.deploy.spec import STATE_KEY, DeploySpec

CONFIG_MOUNT = "/etc/modelfleet"
# The server's V2 health routes (modelfleet.serving.app); the image's HEALTHCHECK uses READY too.
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
PORT_NAME = "http"
UID = 10001
GPU_RESOURCE = "nvidia.com/gpu"
# Kubernetes removes the endpoint while the pod keeps serving for this long, then SIGTERM
# starts the drain: requests routed just before removal still get answers.
PRE_STOP_SECONDS = 5
# SIGKILL comes this long after the drain deadline, so a drain never gets cut short.
GRACE_MARGIN_SECONDS = 20


def _probe(path: str, period: int, failures: int) -> Probe:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _resources(spec: DeploySpec) -> tuple[dict[str, str], dict[str, str]]:
    requests = {"cpu": spec.cpu, "memory": spec.memory}
    limits: dict[str, str] = {}
    if spec.cpu_limit:
        limits["cpu"] = spec.cpu_limit
    if spec.memory_limit:
        limits["memory"] = spec.memory_limit
    if spec.gpu:
        # Extended resources cannot be overcommitted: request and limit must be equal.
        limits[GPU_RESOURCE] = requests[GPU_RESOURCE] = str(spec.gpu)
    return requests, limits


def _env(spec: DeploySpec) -> list[EnvVar]:
    env: list[EnvVar] = [{"name": "MODELFLEET_ENVIRONMENT", "value": spec.environment.value}]
    if spec.state_secret:
        # From the Secret, never literal: the URL holds the backend's password.
        ref: SecretKeySelector = {"name": spec.state_secret, "key": STATE_KEY}
        env.append({"name": "MODELFLEET_STATE_URL", "valueFrom": {"secretKeyRef": ref}})
    return env


def container(spec: DeploySpec, *, name: str = "server", serve_config: bool = True) -> Container:
    """The server container; ``serve_config`` mounts the ConfigMap over the image's config."""
    requests, limits = _resources(spec)
    mounts: list[VolumeMount] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - the only writable path
    if serve_config:
        mounts.append({"name": "serve-config", "mountPath": CONFIG_MOUNT, "readOnly": True})
    made: Container = {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": {"requests": requests},
        "readinessProbe": _probe(READY_PATH, 5, 2),
        "livenessProbe": _probe(LIVE_PATH, 10, 3),
        # Loading and warming a large graph can take minutes; liveness waits for this.
        "startupProbe": _probe(READY_PATH, 2, 60),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    if limits:
        made["resources"]["limits"] = limits
    return made


def tmp_volume() -> Volume:
    """The in-memory /tmp: predictions, logs and the server's scratch files live here."""
    return {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}


def pod_spec(spec: DeploySpec, *, config_map: str) -> PodSpec:
    """Pods that run as an unprivileged user, spread across nodes, on GPU nodes when asked."""
    selector: LabelSelector = {"matchLabels": dict(spec.labels)}
    pod: PodSpec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.drain_seconds + GRACE_MARGIN_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(spec)],
        "volumes": [tmp_volume(), {"name": "serve-config", "configMap": {"name": config_map}}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector,
            }
        ],
    }
    if spec.gpu:
        toleration: Toleration = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        pod["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
        pod["tolerations"] = [toleration]
    return pod
