"""Deploying a model to a cluster: apply its objects, follow and undo the rollout, tidy up.

The cluster connection and server-side apply are :mod:`modelfleet.kube`'s (re-exported
here for callers that deploy); what is specific to a model's Deployment lives here: its
rollout state, failing fast on pods that will not start, rollback to the previous
revision, and pruning the serve ConfigMaps no revision mounts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelfleet.errors import DeployError
from modelfleet.kube import (
    Cluster,
    api_error_message,
    container_waits,
    require_kubernetes,
    scheduling_wait,
    to_api_dict,
)

logger = logging.getLogger(__name__)

_REVISION = "deployment.kubernetes.io/revision"


@dataclass
class Rollout:
    """Progress of a Deployment rollout."""

    desired: int
    updated: int
    ready: int
    done: bool


def rollout_state(cluster: Cluster, name: str, namespace: str) -> Rollout:
    """Where the Deployment's rollout is; raises :class:`DeployError` on a hopeless state."""
    k8s = require_kubernetes()
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
    k8s = require_kubernetes()
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
        unplaced = scheduling_wait(pod)
        if unplaced is not None and unplaced.reason == "Unschedulable":
            raise DeployError(
                f"pod {unplaced.pod} cannot be scheduled: {unplaced.message}",
                hint="lower the CPU/memory/GPU requests or add nodes",
            )
        for wait in container_waits(pod):
            if wait.stuck:
                raise DeployError(
                    f"pod {wait.pod}: {wait.meaning} ({wait.reason}: {wait.message})".strip(),
                    hint="check the image tag is loaded on the nodes and the server log "
                    f"(kubectl logs -n {namespace} {wait.pod})",
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
    k8s = require_kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    try:
        deployment = apps.read_namespaced_deployment(name, namespace)
    except k8s.client.ApiException as exc:
        raise DeployError(
            f"deployment {namespace}/{name} not found: {api_error_message(exc)}"
        ) from exc
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
    template = to_api_dict(previous.spec.template)
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
    previous revisions mount stay, so a rollback finds its config, and so does a release's
    running canary's.
    """
    from modelfleet.deploy.canary import canary_name
    from modelfleet.deploy.manifests import CONFIG_LABEL

    k8s = require_kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    core = k8s.client.CoreV1Api(cluster.api)
    deployment = apps.read_namespaced_deployment(name, namespace)
    templates = [deployment.spec.template] + [
        rs.spec.template for rs in _owned_replica_sets(apps, deployment, namespace)
    ]
    # A release's canary beside the stable mounts a config of its own: it stays too.
    canaries = apps.list_namespaced_deployment(
        namespace, field_selector=f"metadata.name={canary_name(name)}"
    ).items
    templates += [canary.spec.template for canary in canaries]
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
    k8s = require_kubernetes()
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
