"""Kubeconfig files for the tests, pointing at loopback addresses only."""

from __future__ import annotations

import json
from pathlib import Path

TOKEN = "token-for-tests"  # made up: only a loopback test server sees it


def kubeconfig(path: Path, servers: dict[str, str], current: str) -> Path:
    """A kubeconfig with one cluster and context per entry of ``servers``."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
        "users": [{"name": "dev", "user": {"token": TOKEN}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "dev"}} for n in servers],
        "current-context": current,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))  # JSON is YAML, and kubectl reads it too
    return path
