"""Kubernetes: manifests rendered from typed objects, applied, rolled out and rolled back.

:func:`render` turns a :class:`DeploySpec` (a version's image in an environment, with its
resources and scaling) into :data:`Manifest` objects, a typed object per kind;
:func:`to_dict` and :func:`write` give them the API's shape and files. :func:`wait_rollout`,
:func:`rollback`, :func:`list_deployments` and :func:`prune_serve_configs` drive a cluster
through :mod:`modelfleet.kube`; :class:`PrometheusRule` carries the model's alert rules.
:func:`run_release` takes a version to the cluster through a canary (:func:`render_canary`)
that :func:`judge` compares with the stable on :class:`Figures` an :class:`Observation`
reads from the pods' metrics (a :class:`MetricsSource`: :class:`PodProxyScraper`,
:class:`HttpScraper`).
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
from modelfleet.deploy.canary import TRACK_LABEL, canary_name, render_canary, track_selectors
from modelfleet.deploy.crds import Metadata, PrometheusRule, PrometheusRuleSpec, RuleGroup
from modelfleet.deploy.figures import Figures
from modelfleet.deploy.judge import Check, Observation, Thresholds, Verdict, judge, watch
from modelfleet.deploy.manifests import Manifest, render, to_dict, write
from modelfleet.deploy.release import (
    ReleaseOutcome,
    ReleasePlan,
    Stable,
    find_stable,
    remove_canary,
    run_release,
)
from modelfleet.deploy.scrape import HttpScraper, MetricsSource, PodProxyScraper
from modelfleet.deploy.spec import (
    DeploySpec,
    check_image,
    check_namespace,
    check_state_url,
    parse_autoscale,
)

__all__ = [
    "TRACK_LABEL",
    "Check",
    "DeploySpec",
    "Figures",
    "HttpScraper",
    "Manifest",
    "Metadata",
    "MetricsSource",
    "Observation",
    "PodProxyScraper",
    "PrometheusRule",
    "PrometheusRuleSpec",
    "ReleaseOutcome",
    "ReleasePlan",
    "Rollout",
    "RuleGroup",
    "Stable",
    "Thresholds",
    "Verdict",
    "canary_name",
    "check_image",
    "check_namespace",
    "check_state_url",
    "find_stable",
    "judge",
    "list_deployments",
    "parse_autoscale",
    "prune_serve_configs",
    "remove_canary",
    "render",
    "render_canary",
    "rollback",
    "rollout_state",
    "run_release",
    "to_dict",
    "track_selectors",
    "wait_rollout",
    "watch",
    "write",
]
