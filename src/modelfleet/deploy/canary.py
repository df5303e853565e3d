"""The canary beside the stable: its Deployment, its labels, and each track's pod selector.

The stable Deployment keeps the name, labels and selector ``deploy`` renders (a selector
is immutable once created). The canary is a second Deployment, ``NAME-canary``, whose pods
carry the same model labels, so the model's Service (and its disruption budget, network
policy and ServiceMonitor) selects them with the stable's, plus ``modelfleet.io/track:
canary``, which its own selector adds so it owns only its pods. The stable's selector
matches the canary's pods too; a controller adopts only objects without an owner, so
neither Deployment takes the other's ReplicaSets or pods. Traffic splits by ready pods:
with ``c`` canary and ``s`` stable replicas the canary answers about ``c / (c + s)``.
"""

from __future__ import annotations

import dataclasses

from modelfleet.deploy.judge import CANARY, STABLE
from modelfleet.deploy.kinds import Deployment
from modelfleet.deploy.manifests import Manifest, config_map, deployment
from modelfleet.deploy.spec import DeploySpec
from modelfleet.errors import DeployError

TRACK_LABEL = "modelfleet.io/track"
CANARY_SUFFIX = "-canary"


def canary_name(name: str) -> str:
    """The canary Deployment of the model Deployment ``name`` (a DNS label: 53 + 7 chars)."""
    return name + CANARY_SUFFIX


def canary_deployment(spec: DeploySpec, replicas: int) -> Deployment:
    """``spec``'s Deployment as the canary: its own name, track label and replica count."""
    if replicas < 1:
        raise DeployError(f"--canary-replicas must be at least 1, got {replicas}")
    # The canary never has an autoscaler of its own: its share of traffic is its count.
    made = deployment(dataclasses.replace(spec, replicas=replicas, autoscale=None))
    track = {TRACK_LABEL: CANARY}
    made["metadata"]["name"] = canary_name(spec.name)
    made["metadata"]["labels"] = {**spec.labels, **track}
    made["spec"]["selector"] = {"matchLabels": {**spec.labels, **track}}
    template = made["spec"]["template"]["metadata"]
    template["labels"] = {**template.get("labels", {}), **track}
    return made


def render_canary(spec: DeploySpec, replicas: int) -> list[Manifest]:
    """The objects a canary adds beside a running stable: its serve config and Deployment.

    The ConfigMap is the one ``deploy`` renders for ``spec`` (named by its content), so a
    promoted stable mounts the very config the canary was judged with.
    """
    return [config_map(spec), canary_deployment(spec, replicas)]


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def track_selectors(spec: DeploySpec) -> dict[str, str]:
    """Label selectors of each track's pods: ``stable`` is every model pod not in the canary.

    Stable pods carry no track label (``deploy`` renders them, before any canary existed),
    so they are told apart by what they lack.
    """
    base = _selector(spec.labels)
    return {
        STABLE: f"{base},{TRACK_LABEL}!={CANARY}",
        CANARY: f"{base},{TRACK_LABEL}={CANARY}",
    }
