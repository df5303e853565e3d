"""Kubernetes: manifests rendered from typed objects, applied, rolled out and rolled back.

:func:`render` turns a :class:`DeploySpec` (a version's image in an environment, with its
resources and scaling) into :data:`Manifest` objects, a typed object per kind;
:func:`to_dict` and :func:`write` give them the API's shape and files. :func:`wait_rollout`,
:func:`rollback`, :func:`list_deployments` and :func:`prune_serve_configs` drive a cluster
through :mod:`modelfleet.kube`; :class:`PrometheusRule` carries the model's alert rules.
"""

from __future__ import annotations

from modelfleet.deploy.apply import (
    Rollout,
    list_deployments,
    prune_serve_configs,
    rollback,
    rollout_state,
    wait_rollout,
)
from modelfleet.deploy.crds import Metadata, PrometheusRule, PrometheusRuleSpec, RuleGroup
from modelfleet.deploy.manifests import Manifest, render, to_dict, write
from modelfleet.deploy.spec import DeploySpec, check_image, check_namespace, parse_autoscale

__all__ = [
    "DeploySpec",
    "Manifest",
    "Metadata",
    "PrometheusRule",
    "PrometheusRuleSpec",
    "Rollout",
    "RuleGroup",
    "check_image",
    "check_namespace",
    "list_deployments",
    "parse_autoscale",
    "prune_serve_configs",
    "render",
    "rollback",
    "rollout_state",
    "to_dict",
    "wait_rollout",
    "write",
]
