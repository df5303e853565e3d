"""Every engine reports the real size of an image, buildah included."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.build.context import LOCAL_BASE
from modelfleet.build.engines import CliEngine

pytestmark = pytest.mark.podman


def _binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed on this machine")
    return binary


@pytest.fixture(scope="module")
def base_image() -> str:
    podman = _binary("podman")
    if subprocess.run([podman, "image", "exists", LOCAL_BASE], check=False).returncode != 0:
        from modelfleet.build.baseimage import make_base_image

        make_base_image(CliEngine("podman", podman), tag=LOCAL_BASE)
    return LOCAL_BASE


def _podman_size(tag: str) -> int:
    return int(
        subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Size}}", tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


@pytest.mark.parametrize("name", ["podman", "buildah"])
def test_inspect_reports_the_size_podman_lists(name: str, base_image: str) -> None:
    size = CliEngine(name, _binary(name)).inspect(base_image).size
    # podman also counts its stored copies of the manifest (a few hundred bytes).
    assert size == pytest.approx(_podman_size(base_image), rel=0.001)


@pytest.fixture
def buildah_image(tmp_path: Path) -> Iterator[str]:
    tag = f"localhost/modelfleet/size-probe-{os.getpid()}:1-dev"
    yield tag
    subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, check=False)


def test_a_buildah_build_reports_the_size_of_what_it_built(
    base_image: str, buildah_image: str, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "payload.bin").write_bytes(os.urandom(3_000_000))
    (context / "Containerfile").write_text(f"FROM {base_image}\nCOPY payload.bin /payload.bin\n")
    info = CliEngine("buildah", _binary("buildah")).build(context, buildah_image)
    # What 'modelfleet build --engine buildah' prints: the base plus the 3 MB layer, not 0 B.
    assert info.size >= _podman_size(base_image) + 3_000_000
    assert info.size == pytest.approx(_podman_size(buildah_image), rel=0.001)
