"""Kubernetes plumbing shared by deploy and jobs: one client set-up, apply, names, pod reasons.

- :func:`require_kubernetes` is the one import of the optional client (extra ``k8s``);
  :func:`load_api_client` turns a kubeconfig, KUBECONFIG or the in-cluster service
  account into an ``ApiClient``; :func:`to_api_dict` turns a client model into the
  dict the API reads, and :func:`api_error_message` reads what the API server said.
- :class:`Cluster` is that client plus the API versions the cluster serves;
  :func:`apply_objects` server-side applies objects in the newest version both sides know.
- :func:`k8s_name` and :func:`check_quantity` make and check values the API server
  validates (DNS-1123 names, resource quantities).
- :func:`container_waits` and :func:`scheduling_wait` read why a pod is not running;
  :data:`STUCK_REASONS` are the waits that will not end by themselves.

Nothing here knows about models or jobs; failures raise :class:`~modelfleet.errors.DeployError`.
"""

from __future__ import annotations

from modelfleet.kube.apply import FIELD_MANAGER, ApplyResult, Cluster, apply_objects
from modelfleet.kube.client import (
    api_error_message,
    load_api_client,
    require_kubernetes,
    to_api_dict,
)
from modelfleet.kube.names import check_quantity, k8s_name, quantity_amount
from modelfleet.kube.pods import STUCK_REASONS, PodWait, container_waits, scheduling_wait

__all__ = [
    "FIELD_MANAGER",
    "STUCK_REASONS",
    "ApplyResult",
    "Cluster",
    "PodWait",
    "api_error_message",
    "apply_objects",
    "check_quantity",
    "container_waits",
    "k8s_name",
    "load_api_client",
    "quantity_amount",
    "require_kubernetes",
    "scheduling_wait",
    "to_api_dict",
]
