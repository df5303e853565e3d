"""Values the API server checks by its own rules: DNS-1123 names and resource quantities."""

from __future__ import annotations

import re
from decimal import Decimal

from modelfleet.errors import DeployError, MissingDependencyError
from modelfleet.kube.client import require_kubernetes

# A DNS-1123 label allows 63 characters; 53 leaves room for the suffixes controllers add
# (a ReplicaSet's pod-template hash, a pod's random tail) to names derived from ours.
NAME_MAX = 53
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def k8s_name(name: str) -> str:
    """A DNS-1123 label from any name: lower case, '-' for anything else, 1-53 chars."""
    cleaned = _NOT_IN_NAME.sub("-", name.lower()).strip("-")[:NAME_MAX].strip("-")
    if not cleaned:
        raise DeployError(f"cannot derive a Kubernetes name from {name!r}")
    return cleaned


def quantity_amount(value: str) -> Decimal | None:
    """The quantity's value (0 when unparseable), or None when the client is not installed.

    Rendering manifests works without the k8s extra, so this check is skipped there
    rather than failing; the pattern in :func:`check_quantity` still holds.
    """
    try:
        k8s = require_kubernetes("read resource quantities")
    except MissingDependencyError:
        return None
    try:
        return Decimal(k8s.utils.quantity.parse_quantity(value))
    except ValueError:
        return Decimal(0)


def check_quantity(value: str, what: str) -> str:
    """Validate a Kubernetes resource quantity (``500m``, ``2``, ``512Mi``); returns it."""
    ok = _QUANTITY.fullmatch(value) is not None
    if ok:
        amount = quantity_amount(value)
        ok = amount is None or amount > 0
    if not ok:
        raise DeployError(
            f"invalid {what} {value!r}",
            hint="use a Kubernetes quantity such as 500m or 2 (CPU), 512Mi or 2Gi (memory)",
        )
    return value
