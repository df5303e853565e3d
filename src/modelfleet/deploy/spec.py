"""What to deploy: a model version's image in an environment, with its resources and scaling."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelfleet.errors import DeployError
from modelfleet.kube import check_quantity, k8s_name, quantity_amount
from modelfleet.refs import Stage

_SHA256 = re.compile(r"[0-9a-f]{64}")
# A namespace is a DNS-1123 label (Kubernetes' IsDNS1123Label): at most 63 characters.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?")
# An image reference as the OCI distribution grammar (distribution/reference) writes it:
# [host[:port]/]path[:tag][@digest], path components lower case, names at most 255 chars.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE_NAME = re.compile(rf"(?:{_HOST}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_IMAGE_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_IMAGE_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_IMAGE_NAME_MAX = 255
# The graph variants a server can load (modelfleet.registry.records.Variant).
VARIANTS = ("fp32", "fp16", "int8")


def check_namespace(namespace: str) -> str:
    """Validate a Kubernetes namespace (a DNS-1123 label); returns it."""
    if not _DNS_LABEL.fullmatch(namespace):
        raise DeployError(
            f"invalid namespace {namespace!r}",
            hint="a namespace is 1-63 lower-case letters, digits and '-', starting and "
            "ending with a letter or digit",
        )
    return namespace


_STATE_SCHEMES = ("postgresql", "postgres", "redis", "rediss")
_LOOPBACK = re.compile(r"(?:localhost|127(?:\.\d{1,3}){3}|\[?::1\]?)(?::\d+)?", re.IGNORECASE)
STATE_KEY = "url"  # the key of the state Secret that holds the URL


def check_state_url(url: str) -> str:
    """A shared state URL pods can use: PostgreSQL or Redis, not on loopback; returns it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in _STATE_SCHEMES:
        raise DeployError(
            f"--state-url must name PostgreSQL or Redis, got a {scheme or 'bare'!r} URL",
            hint="use postgresql://USER:PASSWORD@HOST/DB or redis://HOST:6379/0; a SQLite "
            "file cannot be shared by pods",
        )
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if not host or _LOOPBACK.fullmatch(host):
        raise DeployError(
            f"--state-url points at {host or 'no host'}: every pod would look inside itself",
            hint="give the address pods reach the backend at (a Service name or a host "
            "outside the pod)",
        )
    return url


def check_image(image: str) -> str:
    """Validate an OCI image reference (``host:5000/team/model:tag@sha256:…``); returns it."""
    rest, _, digest = image.partition("@")
    name, tag = rest, ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:  # a ':' after the last '/' starts the tag, not a registry port
        name, tag = rest[:colon], rest[colon + 1 :]
    ok = (
        len(name) <= _IMAGE_NAME_MAX
        and _IMAGE_NAME.fullmatch(name) is not None
        and (colon <= slash or _IMAGE_TAG.fullmatch(tag) is not None)
        and ("@" not in image or _IMAGE_DIGEST.fullmatch(digest) is not None)
    )
    if not ok:
        raise DeployError(
            f"invalid image {image!r}",
            hint="give an OCI image reference such as registry.example.com/team/model:3-prod "
            "(lower-case path, tag of letters, digits, '_', '.' and '-', optional @sha256:…)",
        )
    return image


def _within_limit(request: str, limit: str | None, what: str, flag: str) -> None:
    if not limit:
        return
    asked, most = quantity_amount(request), quantity_amount(limit)
    if asked is not None and most is not None and asked > most:
        raise DeployError(
            f"{what} request {request} is above its limit {limit}",
            hint=f"raise {flag}-limit or lower {flag}",
        )


@dataclass
class DeploySpec:
    """Everything the manifests are rendered from."""

    model: str
    version: int
    variant: str
    environment: Stage
    image: str
    artifact_sha256: str
    metrics: dict[str, float] = field(default_factory=dict)
    namespace: str | None = None
    replicas: int = 2
    autoscale: tuple[int, int] | None = None
    target_cpu: int = 70
    queue_target: float | None = None
    cpu: str = "500m"
    cpu_limit: str | None = "2"
    memory: str = "512Mi"
    memory_limit: str | None = "1Gi"
    gpu: int = 0
    port: int = 8080
    drain_seconds: int = 30
    latency_p99_ms: float = 100.0
    profile: bool = False  # the image carries the training profile (drift is scored)
    # A Secret in the namespace whose key "url" is the shared state URL (MODELFLEET_STATE_URL
    # in the pods); None: each pod keeps predictions and feedback to itself.
    state_secret: str | None = None

    def __post_init__(self) -> None:
        check_image(self.image)
        if self.namespace is not None:
            check_namespace(self.namespace)
        if self.state_secret is not None and not _DNS_SUBDOMAIN.fullmatch(self.state_secret):
            raise DeployError(
                f"invalid Secret name {self.state_secret!r}",
                hint="a Secret name is lower-case letters, digits, '-' and '.' (at most 253)",
            )
        self._check_artifact()
        self._check_scaling()
        self._check_resources()

    def _check_artifact(self) -> None:
        if self.variant not in VARIANTS:
            raise DeployError(
                f"unknown variant {self.variant!r}", hint=f"use one of {', '.join(VARIANTS)}"
            )
        if not _SHA256.fullmatch(self.artifact_sha256):
            raise DeployError(
                f"artifact digest {self.artifact_sha256!r} is not a sha256",
                hint="pass the 64 hex digits the registry records for the ONNX graph",
            )
        if not 1 <= self.port <= 65535:
            raise DeployError(f"port must be 1-65535, got {self.port}")
        if self.drain_seconds < 0:
            raise DeployError(f"drain time must be 0 s or more, got {self.drain_seconds}")

    def _check_scaling(self) -> None:
        if self.replicas < 1:
            raise DeployError(f"replicas must be at least 1, got {self.replicas}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 1 <= low <= high:
                raise DeployError(
                    f"invalid autoscale range {low}:{high}",
                    hint="write MIN:MAX with 1 <= MIN <= MAX",
                )
        if not 1 <= self.target_cpu <= 100:
            raise DeployError(f"target CPU must be 1-100 percent, got {self.target_cpu}")
        if self.queue_target is not None and self.queue_target <= 0:
            raise DeployError(
                f"queue target must be above 0, got {self.queue_target}",
                hint="give the queued requests per pod the autoscaler should aim for",
            )

    def _check_resources(self) -> None:
        if self.gpu < 0:
            raise DeployError(f"--gpu must be 0 or more, got {self.gpu}")
        check_quantity(self.cpu, "CPU request")
        check_quantity(self.memory, "memory request")
        if self.cpu_limit:
            check_quantity(self.cpu_limit, "CPU limit")
        if self.memory_limit:
            check_quantity(self.memory_limit, "memory limit")
        _within_limit(self.cpu, self.cpu_limit, "CPU", "--cpu")
        _within_limit(self.memory, self.memory_limit, "memory", "--memory")

    @property
    def name(self) -> str:
        """The Deployment/Service name."""
        return k8s_name(self.model)

    @property
    def ns(self) -> str:
        """Namespace: one per environment unless given."""
        return self.namespace or f"modelfleet-{self.environment.value}"

    @property
    def labels(self) -> dict[str, str]:
        """Labels that select this model's pods (stable across versions)."""
        return {
            "app.kubernetes.io/name": self.name,
            "app.kubernetes.io/part-of": "modelfleet",
            "modelfleet.io/environment": self.environment.value,
        }

    @property
    def version_labels(self) -> dict[str, str]:
        """Labels that change with the version (pods and their template)."""
        return {
            **self.labels,
            "app.kubernetes.io/version": str(self.version),
            "modelfleet.io/variant": self.variant,
        }


def parse_autoscale(text: str | None) -> tuple[int, int] | None:
    """``MIN:MAX`` → ``(MIN, MAX)``."""
    if not text:
        return None
    low, sep, high = text.partition(":")
    if not sep or not low.isdigit() or not high.isdigit():
        raise DeployError(f"invalid --autoscale {text!r}", hint="write MIN:MAX, e.g. 2:10")
    return int(low), int(high)
