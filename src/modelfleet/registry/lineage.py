"""Lineage facts recorded with a version: data digest, git commit, runtime versions."""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet.signature import to_named_arrays


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git work tree around ``cwd``, or ``(None, None)`` outside one."""
    git = shutil.which("git")
    if git is None:
        return None, None
    where = str(cwd or Path.cwd())
    try:
        commit = subprocess.run(
            [git, "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def data_sha256(data: Any) -> str:
    """A stable digest of training data: a file's bytes, or arrays' names, dtypes and values."""
    digest = hashlib.sha256()
    if isinstance(data, str | os.PathLike):
        with open(data, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    for name, array in sorted(to_named_arrays(data).items()):
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        if array.dtype.kind == "O":
            for item in array.ravel():
                digest.update(str(item).encode())
                digest.update(b"\x00")
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def runtime_environment(*packages: str) -> dict[str, str]:
    """Python, modelfleet and the given packages' versions, for the version record."""
    env = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in ("modelfleet", "numpy", "onnx", "onnxruntime", *packages):
        version = package_version(name)
        if version:
            env[name] = version
    return env


def current_user(configured: str | None = None) -> str:
    """Who is acting, for the audit trail."""
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
