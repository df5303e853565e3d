"""Values the API server checks by its own rules: DNS-1123 names and resource quantities."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

from modelfleet.errors import DeployError, MissingDependencyError
from modelfleet.kube.client import require_kubernetes

# A DNS-1123 label allows 63 characters; 53 leaves room for the suffixes controllers add
# (a ReplicaSet's pod-template hash, a pod's random tail) to names derived from ours.
NAME_MAX = 53
# The API server's rule for a label (apimachinery IsDNS1123Label).
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")
_DIGEST_CHARS = 8
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def k8s_name(name: str) -> str:
    """A DNS-1123 label of at most 53 characters for ``name``, a different one for each name.

    A name that already is such a label is kept as it is, so existing objects keep their
    names. Any other name is cleaned (lower case, '-' for the rest, cut to fit) and ends in
    8 hex of its sha256: 'Churn-A', 'churn_a' and 'churn-a' are three models in the registry,
    and must not become one Deployment.
    """
    if len(name) <= NAME_MAX and _DNS_1123_LABEL.fullmatch(name):
        return name
    cleaned = _NOT_IN_NAME.sub("-", name.lower()).strip("-")
    if not cleaned:
        raise DeployError(
            f"cannot derive a Kubernetes name from {name!r}",
            hint="name it with at least one ASCII letter or digit",
        )
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    readable = cleaned[: NAME_MAX - _DIGEST_CHARS - 1].rstrip("-")
    return f"{readable}-{digest}"


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
