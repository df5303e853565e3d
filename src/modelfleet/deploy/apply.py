"""Applying manifests to a cluster with the official client: discovery, apply, rollout, rollback.

Objects go in by server-side apply (field manager ``modelfleet``). Before that, the cluster
is asked which versions of each API group it serves, and every object is sent in the
newest one both sides know (autoscaling/v2 or v2beta2, policy/v1 or v1beta1); kinds whose
group the cluster does not serve (ServiceMonitor without the Prometheus operator) are
skipped with a note instead of failing the deployment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.errors import DeployError, MissingDependencyError

logger = logging.getLogger(__name__)

FIELD_MANAGER = "modelfleet"
# Versions modelfleet can write, newest first; the fields it sets are the same in each.
_ALTERNATIVES = {
    "autoscaling": ["v2", "v2beta2"],
    "policy": ["v1", "v1beta1"],
}
_REVISION = "deployment.kubernetes.io/revision"
# Reasons a pod waits that will not fix themselves, and what they mean.
STUCK_REASONS = {
    "ErrImagePull": "the image cannot be pulled",
    "ImagePullBackOff": "the image cannot be pulled",
    "InvalidImageName": "the image name is invalid",
    "CrashLoopBackOff": "the server keeps crashing",
    "CreateContainerConfigError": "the container configuration is invalid",
}


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise MissingDependencyError("kubernetes", "k8s", purpose="talk to a cluster") from exc
    return kubernetes


@dataclass
class Cluster:
    """A connection to a cluster and what it serves."""

    api: Any
    served: dict[str, list[str]] = field(default_factory=dict)
    server_version: str = ""

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
        """Load kubeconfig (or the in-cluster config) and discover the served API versions."""
        k8s = _kubernetes()
        try:
            if kubeconfig is None and _in_cluster():
                k8s.config.load_incluster_config()
                api = k8s.client.ApiClient()
            else:
                api = k8s.config.new_client_from_config(
                    config_file=str(kubeconfig) if kubeconfig else None, context=context
                )
        except (k8s.config.ConfigException, OSError) as exc:
            raise DeployError(
                f"cannot load the cluster configuration: {exc}",
                hint="pass --kubeconfig or set KUBECONFIG",
            ) from exc
        cluster = cls(api)
        cluster.discover()
        return cluster

    def discover(self) -> None:
        """Ask the API server which group versions it serves."""
        k8s = _kubernetes()
        try:
            groups = k8s.client.ApisApi(self.api).get_api_versions()
            version = k8s.client.VersionApi(self.api).get_code()
        except Exception as exc:  # urllib3 and ApiException: the server is unreachable
            raise DeployError(
                f"the Kubernetes API server does not answer: {_reason(exc)}",
                hint="check the kubeconfig's server URL and credentials",
            ) from exc
        self.server_version = version.git_version
        self.served = {"": ["v1"]}
        for group in groups.groups:
            self.served[group.name] = [v.version for v in group.versions]

    def api_version_for(self, api_version: str) -> str | None:
        """The version to send ``api_version`` objects in, or None if the group is absent."""
        group, _, version = api_version.rpartition("/")
        served = self.served.get(group)
        if not served:
            return None
        short = group.split(".")[0]
        for candidate in [version, *_ALTERNATIVES.get(short, [])]:
            if candidate in served:
                return f"{group}/{candidate}" if group else candidate
        return None


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _reason(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if body:
        import json

        try:
            return str(json.loads(body).get("message", body))[:300]
        except (ValueError, AttributeError):
            return str(body)[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


@dataclass
class ApplyResult:
    """What happened to each object."""

    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def apply_objects(cluster: Cluster, objects: list[dict[str, Any]]) -> ApplyResult:
    """Server-side apply every object in the newest API version the cluster serves."""
    k8s = _kubernetes()
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(cluster.api)
    result = ApplyResult()
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        version = cluster.api_version_for(obj["apiVersion"])
        if version is None:
            result.skipped.append(f"{kind}/{name} ({obj['apiVersion']} is not served)")
            continue
        body = {**obj, "apiVersion": version}
        try:
            resource = dynamic.resources.get(api_version=version, kind=kind)
            resource.server_side_apply(
                body=body,
                name=name,
                namespace=obj["metadata"].get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except k8s.dynamic.exceptions.ResourceNotFoundError:
            result.skipped.append(f"{kind}/{name} ({version} has no {kind})")
            continue
        except k8s.client.ApiException as exc:
            raise DeployError(f"applying {kind}/{name} failed: {_reason(exc)}") from exc
        result.applied.append(f"{kind}/{name} ({version})")
    return result


@dataclass
class Rollout:
    """Progress of a Deployment rollout."""

    desired: int
    updated: int
    ready: int
    done: bool


def rollout_state(cluster: Cluster, name: str, namespace: str) -> Rollout:
    """Where the Deployment's rollout is; raises :class:`DeployError` on a hopeless state."""
    k8s = _kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    deployment = apps.read_namespaced_deployment(name, namespace)
    status = deployment.status
    desired = deployment.spec.replicas or 0
    updated = status.updated_replicas or 0
    ready = status.ready_replicas or 0
    available = status.available_replicas or 0
    done = (
        (status.observed_generation or 0) >= deployment.metadata.generation
        and updated == desired
        and available == desired
        and (status.replicas or 0) == desired
    )
    if not done:
        _check_pods(cluster, deployment, namespace)
    return Rollout(desired, updated, ready, done)


def _check_pods(cluster: Cluster, deployment: Any, namespace: str) -> None:
    """Fail on what stops the new revision's pods; an older revision's troubles are not ours."""
    k8s = _kubernetes()
    if (deployment.status.observed_generation or 0) < deployment.metadata.generation:
        return  # the controller has not made the new revision's ReplicaSet yet
    revision = (deployment.metadata.annotations or {}).get(_REVISION)
    current = [
        rs
        for rs in _owned_replica_sets(k8s.client.AppsV1Api(cluster.api), deployment, namespace)
        if (rs.metadata.annotations or {}).get(_REVISION) == revision
    ]
    template_hash = (current[0].metadata.labels or {}).get("pod-template-hash") if current else None
    if template_hash is None:
        return
    core = k8s.client.CoreV1Api(cluster.api)
    selector = ",".join(
        f"{k}={v}"
        for k, v in {
            **deployment.spec.selector.match_labels,
            "pod-template-hash": template_hash,
        }.items()
    )
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                raise DeployError(
                    f"pod {pod.metadata.name} cannot be scheduled: {condition.message}",
                    hint="lower the CPU/memory/GPU requests or add nodes",
                )
        for container in pod.status.container_statuses or []:
            waiting = container.state.waiting if container.state else None
            if waiting and waiting.reason in STUCK_REASONS:
                raise DeployError(
                    f"pod {pod.metadata.name}: {STUCK_REASONS[waiting.reason]} "
                    f"({waiting.reason}: {waiting.message or ''})".strip(),
                    hint="check the image tag is loaded on the nodes and the server log "
                    f"(kubectl logs -n {namespace} {pod.metadata.name})",
                )


def wait_rollout(
    cluster: Cluster,
    name: str,
    namespace: str,
    *,
    timeout: float = 300,
    progress: Callable[[Rollout], None] | None = None,
) -> Rollout:
    """Poll until the rollout completes; fail fast on pull errors, crash loops, no room."""
    deadline = time.monotonic() + timeout
    while True:
        state = rollout_state(cluster, name, namespace)
        if progress:
            progress(state)
        if state.done:
            return state
        if time.monotonic() > deadline:
            raise DeployError(
                f"rollout of {namespace}/{name} did not finish in {timeout:.0f} s "
                f"({state.ready}/{state.desired} ready, {state.updated} updated)"
            )
        time.sleep(1)


def rollback(cluster: Cluster, name: str, namespace: str) -> int:
    """Return the Deployment to its previous revision's pod template; returns that revision."""
    k8s = _kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    try:
        deployment = apps.read_namespaced_deployment(name, namespace)
    except k8s.client.ApiException as exc:
        raise DeployError(f"deployment {namespace}/{name} not found: {_reason(exc)}") from exc
    revisions = sorted(
        _owned_replica_sets(apps, deployment, namespace),
        key=lambda rs: int(rs.metadata.annotations.get(_REVISION, 0)),
    )
    if len(revisions) < 2:
        raise DeployError(
            f"{namespace}/{name} has no previous revision to return to",
            hint="deploy another version first",
        )
    previous = revisions[-2]
    template = k8s.client.ApiClient().sanitize_for_serialization(previous.spec.template)
    template["metadata"]["labels"].pop("pod-template-hash", None)
    apps.patch_namespaced_deployment(name, namespace, {"spec": {"template": template}})
    return int(previous.metadata.annotations.get(_REVISION, 0))


def _owned_replica_sets(apps: Any, deployment: Any, namespace: str) -> list[Any]:
    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    return [
        rs
        for rs in apps.list_namespaced_replica_set(namespace, label_selector=selector).items
        if any(ref.uid == deployment.metadata.uid for ref in rs.metadata.owner_references or [])
    ]


def prune_serve_configs(cluster: Cluster, name: str, namespace: str) -> list[str]:
    """Delete the serve ConfigMaps no revision of the Deployment reads any more.

    Each config is its own object (named by its digest); the ones the current and the kept
    previous revisions mount stay, so a rollback finds its config.
    """
    from modelfleet.deploy.manifests import CONFIG_LABEL

    k8s = _kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    core = k8s.client.CoreV1Api(cluster.api)
    deployment = apps.read_namespaced_deployment(name, namespace)
    templates = [deployment.spec.template] + [
        rs.spec.template for rs in _owned_replica_sets(apps, deployment, namespace)
    ]
    used = {
        volume.config_map.name
        for template in templates
        for volume in template.spec.volumes or []
        if volume.config_map is not None
    }
    deleted = []
    for config in core.list_namespaced_config_map(
        namespace, label_selector=f"{CONFIG_LABEL}={name}"
    ).items:
        if config.metadata.name not in used:
            core.delete_namespaced_config_map(config.metadata.name, namespace)
            deleted.append(config.metadata.name)
    return deleted


def list_deployments(cluster: Cluster) -> list[dict[str, Any]]:
    """Every modelfleet Deployment in the cluster: where, which version, how ready."""
    k8s = _kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    items = apps.list_deployment_for_all_namespaces(
        label_selector="app.kubernetes.io/part-of=modelfleet"
    ).items
    rows = []
    for d in items:
        labels = d.spec.template.metadata.labels or {}
        rows.append(
            {
                "namespace": d.metadata.namespace,
                "name": d.metadata.name,
                "environment": labels.get("modelfleet.io/environment", ""),
                "version": labels.get("app.kubernetes.io/version", ""),
                "variant": labels.get("modelfleet.io/variant", ""),
                "ready": f"{d.status.ready_replicas or 0}/{d.spec.replicas or 0}",
                "image": d.spec.template.spec.containers[0].image,
            }
        )
    return rows
