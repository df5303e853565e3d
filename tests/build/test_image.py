"""A real podman build and run: answers V2, non-root on a read-only root, within its budget."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.build.context import LOCAL_BASE, build
from modelfleet.build.engines import CliEngine, ImageEngine
from modelfleet.build.local import run_container
from modelfleet.client import Client
from modelfleet.config import Settings
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.models import logistic_pipeline

pytestmark = [pytest.mark.podman, pytest.mark.slow]
# ONNX Runtime, numpy and the ASGI stack come to ~120 MB; the rest is headroom for our own
# code, which the structure work grew by a few dozen kB. A heavy dependency (scikit-learn,
# torch) slipping into the image would break it by far.
BUDGET_BYTES = 125 * 1000 * 1000


@pytest.fixture(scope="session")
def podman() -> ImageEngine:
    binary = shutil.which("podman")
    if binary is None:
        raise RuntimeError("podman is not installed; run 'make test' (it installs podman)")
    engine = CliEngine("podman", binary)
    exists = subprocess.run([binary, "image", "exists", LOCAL_BASE], check=False)
    if exists.returncode != 0:
        from modelfleet.build.baseimage import make_base_image

        make_base_image(engine, tag=LOCAL_BASE)
    return engine


@pytest.fixture
def built(
    podman: ImageEngine, registry: Registry, settings: Settings, tmp_path: Path
) -> Iterator[tuple[mf.ModelVersion, str]]:
    model, X, y = logistic_pipeline()
    version = mf.register(
        model,
        name="iris-img",
        sample_input=X[:20],
        metrics={"accuracy": model.score(X, y)},
        registry=registry,
    )
    result = build(
        registry,
        "iris-img:1",
        Stage.QA,
        out=tmp_path / "ctx",
        cache=settings.home / "cache",
        engine=podman,
        base=LOCAL_BASE,
    )
    assert result.image is not None
    yield version, result.tag
    subprocess.run(["podman", "rmi", "-f", result.tag], capture_output=True, check=False)


def _inspect(tag: str) -> dict:
    out = subprocess.run(
        ["podman", "image", "inspect", tag], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]


def test_image_serves_v2_as_nonroot_on_a_readonly_root(built: tuple[mf.ModelVersion, str]) -> None:
    version, tag = built
    _, X, _ = logistic_pipeline()
    with run_container("podman", tag) as container:
        with Client(container.url) as client:
            out = client.predict("iris-img", X[:3])
            meta = client.metadata("iris-img")
        assert out["label"].tolist() == [0, 0, 0]
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, atol=1e-5)
        assert meta["versions"] == ["1"]
        assert meta["parameters"]["sha256"] == version.artifact("onnx").sha256
        assert container.exec("id", "-u").stdout.strip() == "10001"
        root_write = container.exec("touch", "/opt/modelfleet/x")
        assert root_write.returncode != 0
        assert "Read-only file system" in root_write.stderr
        assert container.exec("touch", "/tmp/ok").returncode == 0
        # `python` is the image's own (a Kubernetes Job runs `python -m modelfleet.jobs.runner`).
        which = container.exec("python", "-c", "import sys, modelfleet; print(sys.prefix)")
        assert which.stdout.strip() == "/opt/venv", which.stderr


def test_labels_budget_and_cache_reuse(
    built: tuple[mf.ModelVersion, str],
    podman: ImageEngine,
    registry: Registry,
    settings: Settings,
    tmp_path: Path,
) -> None:
    version, tag = built
    info = _inspect(tag)
    labels = info["Config"]["Labels"]
    assert labels["io.modelfleet.model"] == "iris-img"
    assert labels["io.modelfleet.model.version"] == "1"
    assert labels["io.modelfleet.environment"] == "qa"
    assert labels["io.modelfleet.artifact.sha256"] == version.artifact("onnx").sha256
    assert info["Config"]["User"] == "10001:10001"
    health = info.get("Healthcheck") or info["Config"].get("Healthcheck") or {}
    assert "/v2/health/ready" in " ".join(health.get("Test", []))
    added = info["Size"] - _inspect(LOCAL_BASE)["Size"]
    print(
        f"base {_inspect(LOCAL_BASE)['Size'] / 1e6:.1f} MB, added {added / 1e6:.1f} MB, "
        f"total {info['Size'] / 1e6:.1f} MB"
    )
    assert added <= BUDGET_BYTES
    again = build(
        registry,
        "iris-img:1",
        Stage.QA,
        out=tmp_path / "ctx2",
        cache=settings.home / "cache",
        engine=podman,
        base=LOCAL_BASE,
    )
    assert again.image is not None
    assert again.image.digest == _inspect(tag)["Digest"]  # same inputs, same image (cache)
