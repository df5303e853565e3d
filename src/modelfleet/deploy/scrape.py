"""Where a release reads its tracks' metrics: the pods, or servers reached by URL.

:class:`MetricsSource` is what the judge's observation needs: the ``/metrics`` text of every
serving pod of a track. :class:`PodProxyScraper` reaches the pods through the Kubernetes API
server's pod proxy, so wherever ``modelfleet release`` runs (a laptop, a CI job) it needs no
route to pod IPs, only the ``pods/proxy`` permission its kubeconfig already uses for the
cluster. :class:`HttpScraper` reads servers by URL (tests, port-forwarded pods).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

from modelfleet.deploy.pod import METRICS_PATH, PORT_NAME
from modelfleet.errors import DeployError
from modelfleet.kube import Cluster, api_error_message, require_kubernetes

logger = logging.getLogger(__name__)


class MetricsSource(Protocol):
    """The Prometheus expositions of a track's serving pods."""

    def expositions(self, track: str) -> dict[str, str]:
        """The ``/metrics`` text of every serving pod of ``track``, keyed by pod."""
        ...


class HttpScraper:
    """Servers read directly over HTTP: ``urls`` maps each track to its servers' base URLs."""

    def __init__(
        self,
        urls: Mapping[str, Sequence[str]],
        *,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.urls = {track: list(found) for track, found in urls.items()}
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def expositions(self, track: str) -> dict[str, str]:
        """GET ``/metrics`` of each server of ``track``."""
        texts = {}
        for url in self.urls.get(track, []):
            target = url.rstrip("/") + METRICS_PATH
            try:
                answer = httpx.get(target, headers=self.headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise DeployError(
                    f"cannot read {target}: {exc}", hint="check the server is up"
                ) from exc
            if answer.status_code != 200:
                raise DeployError(
                    f"{target} answered {answer.status_code}",
                    hint="give a token with the admin scope if the server's metrics are closed",
                )
            texts[url] = answer.text
        return texts


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def _port(pod: Any) -> int | None:
    for container in pod.spec.containers:
        for port in container.ports or []:
            if port.name == PORT_NAME:
                return int(port.container_port)
    return None


class PodProxyScraper:
    """A track's ready pods, read through the API server's pod proxy.

    ``selectors`` maps each track to a label selector of its pods. Pods that are not ready
    (starting, terminating) are left out: the Service sends them no traffic either.
    """

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        selectors: Mapping[str, str],
        *,
        timeout: float = 10.0,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.selectors = dict(selectors)
        self.timeout = timeout

    def expositions(self, track: str) -> dict[str, str]:
        """``/metrics`` of every ready pod of ``track``."""
        k8s = require_kubernetes()
        core = k8s.client.CoreV1Api(self.cluster.api)
        selector = self.selectors[track]
        try:
            pods = core.list_namespaced_pod(self.namespace, label_selector=selector).items
        except k8s.client.ApiException as exc:
            raise DeployError(
                f"cannot list the {track} pods in {self.namespace}: {api_error_message(exc)}"
            ) from exc
        texts = {}
        for pod in pods:
            if not _ready(pod):
                continue
            name = pod.metadata.name
            port = _port(pod)
            # Without a port the API server picks the pod's first declared one.
            target = f"{name}:{port}" if port else name
            try:
                answer = core.connect_get_namespaced_pod_proxy_with_path(
                    target,
                    self.namespace,
                    METRICS_PATH.lstrip("/"),
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            except Exception as exc:  # ApiException, or urllib3's when the server is unreachable
                raise DeployError(
                    f"cannot read the metrics of pod {self.namespace}/{name} through the API "
                    f"server: {api_error_message(exc)}",
                    hint="the kubeconfig's user needs 'get' on pods/proxy in the namespace",
                ) from exc
            texts[name] = answer.data.decode()
            logger.debug("read %d bytes of metrics from %s", len(texts[name]), name)
        return texts
