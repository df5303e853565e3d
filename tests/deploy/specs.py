"""Deploy specs for the tests and their rendered manifests, keyed by kind."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from modelfleet.deploy import DeploySpec, render, to_dict
from modelfleet.refs import Stage

# Oldest and newest Kubernetes minor versions whose schemas kubernetes-validate ships
# and that modelfleet supports.
OLDEST, NEWEST = "1.25", "1.37"
SHA = "ab" * 32


def make_spec(**overrides: Any) -> DeploySpec:
    """A production deploy of churn model version 3 (int8), with ``overrides``."""
    fields: dict[str, Any] = {
        "model": "Churn_Model",
        "version": 3,
        "variant": "int8",
        "environment": Stage.PROD,
        "image": "localhost/modelfleet/churn-model:3-prod",
        "artifact_sha256": SHA,
        "metrics": {"accuracy": 0.93},
    }
    fields.update(overrides)
    return DeploySpec(**fields)


def rendered(spec: DeploySpec, *, kserve: bool = False) -> dict[str, dict[str, Any]]:
    """Every rendered object as the API sees it, keyed by kind."""
    return {obj["kind"]: obj for obj in (to_dict(o) for o in render(spec, kserve=kserve))}


def validate(data: dict[str, Any], *versions: str) -> None:
    """Check ``data`` against the real Kubernetes schemas (unknown fields refused)."""
    for version in versions or (OLDEST, NEWEST):
        kubernetes_validate.validate(data, version, strict=True)


def pod_of(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod spec."""
    pod: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return pod
