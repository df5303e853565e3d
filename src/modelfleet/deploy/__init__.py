"""Kubernetes: manifests rendered from typed objects, applied with the official client."""

from __future__ import annotations

from modelfleet.deploy.manifests import Manifest, render, to_dict, write
from modelfleet.deploy.spec import DeploySpec, k8s_name, parse_autoscale

__all__ = ["DeploySpec", "Manifest", "k8s_name", "parse_autoscale", "render", "to_dict", "write"]
