"""The Kubernetes client: its one optional import, config loading, and its error messages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from modelfleet.errors import DeployError, MissingDependencyError

_CONFIG_HINT = "pass --kubeconfig or set KUBECONFIG"


def require_kubernetes(purpose: str = "talk to a cluster") -> Any:
    """The ``kubernetes`` package, or an error naming the extra that installs it."""
    try:
        import kubernetes
    except ImportError as exc:
        raise MissingDependencyError("kubernetes", "k8s", purpose=purpose) from exc
    return kubernetes


def _in_cluster() -> bool:
    """Whether this process runs in a pod (the kubelet sets this for every container)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def load_api_client(kubeconfig: Path | None = None, context: str | None = None) -> Any:
    """An ``ApiClient`` from ``kubeconfig``, else the in-cluster config, else KUBECONFIG.

    Without an explicit file, a pod uses its service account; elsewhere KUBECONFIG (one
    path or several joined by the OS path separator) or ``~/.kube/config`` is read.
    """
    k8s = require_kubernetes()
    if kubeconfig is None and _in_cluster():
        try:
            k8s.config.load_incluster_config()
        except k8s.config.ConfigException as exc:
            raise DeployError(
                f"cannot load the in-cluster configuration: {exc}", hint=_CONFIG_HINT
            ) from exc
        return k8s.client.ApiClient()
    source = _kubeconfig_source(kubeconfig)
    try:
        return k8s.config.new_client_from_config(config_file=source, context=context)
    # The loader indexes into whatever the YAML held, so a file of the wrong shape
    # (a list, a bare string) surfaces as TypeError or AttributeError, not ConfigException.
    except (
        k8s.config.ConfigException,
        yaml.YAMLError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
    ) as exc:
        raise DeployError(
            f"cannot load the cluster configuration from {source}: {exc}", hint=_CONFIG_HINT
        ) from exc


def _kubeconfig_source(kubeconfig: Path | None) -> str:
    """The kubeconfig path(s) to read; fails clearly when none of them exists.

    KUBECONFIG is read here, not by the client, which reads it once at import time.
    """
    if kubeconfig is not None:
        source, named = str(kubeconfig), f"kubeconfig {kubeconfig}"
    elif os.environ.get("KUBECONFIG"):
        source = os.environ["KUBECONFIG"]
        named = f"KUBECONFIG={source}"
    else:
        source = str(Path("~/.kube/config").expanduser())
        named = f"{source} (KUBECONFIG is not set)"
    paths = [Path(p).expanduser() for p in source.split(os.pathsep) if p]
    if not any(path.is_file() for path in paths):
        raise DeployError(f"no cluster configuration: {named} does not exist", hint=_CONFIG_HINT)
    return source


def to_api_dict(obj: Any) -> dict[str, Any]:
    """A client model such as ``V1Job`` as the API reads it: camelCase, no nulls."""
    k8s = require_kubernetes("serialize Kubernetes objects")
    data: dict[str, Any] = k8s.client.ApiClient().sanitize_for_serialization(obj)
    return data


def api_error_message(exc: BaseException) -> str:
    """What the API server (or the connection to it) said, in one short line."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))[:300]
        except (ValueError, AttributeError):
            return str(body)[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
