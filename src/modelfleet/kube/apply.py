"""A connection to a cluster, the API versions it serves, and server-side apply in them.

Objects go in by server-side apply (field manager ``modelfleet``). Before that, the cluster
is asked which versions of each API group it serves, and every object is sent in the
newest one both sides know (autoscaling/v2 or v2beta2, policy/v1 or v1beta1); kinds whose
group the cluster does not serve (ServiceMonitor without the Prometheus operator) are
skipped with a note instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.errors import DeployError
from modelfleet.kube.client import api_error_message, load_api_client, require_kubernetes

FIELD_MANAGER = "modelfleet"
# Versions modelfleet can write, newest first; the fields it sets are the same in each.
_ALTERNATIVES = {
    "autoscaling": ["v2", "v2beta2"],
    "policy": ["v1", "v1beta1"],
}


@dataclass
class Cluster:
    """A connection to a cluster and what it serves."""

    api: Any
    served: dict[str, list[str]] = field(default_factory=dict)
    server_version: str = ""

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
        """Load kubeconfig (or the in-cluster config) and discover the served API versions."""
        cluster = cls(load_api_client(kubeconfig, context))
        cluster.discover()
        return cluster

    def discover(self) -> None:
        """Ask the API server which group versions it serves."""
        k8s = require_kubernetes()
        try:
            groups = k8s.client.ApisApi(self.api).get_api_versions()
            version = k8s.client.VersionApi(self.api).get_code()
        except Exception as exc:  # urllib3 and ApiException: the server is unreachable
            raise DeployError(
                f"the Kubernetes API server does not answer: {api_error_message(exc)}",
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


@dataclass
class ApplyResult:
    """What happened to each object."""

    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def apply_objects(cluster: Cluster, objects: list[dict[str, Any]]) -> ApplyResult:
    """Server-side apply every object in the newest API version the cluster serves."""
    k8s = require_kubernetes()
    dynamic = k8s.dynamic.DynamicClient(cluster.api)
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
            raise DeployError(f"applying {kind}/{name} failed: {api_error_message(exc)}") from exc
        result.applied.append(f"{kind}/{name} ({version})")
    return result
