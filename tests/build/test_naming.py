"""Image tags: one per model, in the reference format podman accepts, stable for plain names."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import modelfleet as mf
from modelfleet.build import image_tag
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.models import sum_graph

# The path component of an image name in the OCI distribution spec (and containers/image's
# docker/reference): lower-case runs joined by '.', '_', '__' or dashes.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
TAG = re.compile(r"[\w][\w.-]{0,127}")

# Names the registry keeps apart, but whose tags used to coincide or be invalid.
NAMES = [
    "churn-a",
    "churn_a",
    "Churn-A",
    "CHURN_A",
    "churn",
    "churn-",
    "churn_",
    "churn.",
    "churn..v2",
    "churn.v2",
    "churn-v2",
    "churn_v2",
    "churn__v2",
    "churn--v2",
]


def _tags(registry: Registry, names: list[str], stage: Stage = Stage.QA) -> dict[str, str]:
    return {
        name: image_tag(mf.register(sum_graph(), name=name, registry=registry), stage)
        for name in names
    }


def _component(tag: str) -> str:
    repository, _, _ = tag.rpartition(":")
    return repository.removeprefix("localhost/modelfleet/")


def test_models_the_registry_keeps_apart_get_their_own_image(registry: Registry) -> None:
    tags = _tags(registry, NAMES)
    assert len(set(tags.values())) == len(NAMES), tags
    for tag in tags.values():
        _, _, version_env = tag.rpartition(":")
        assert COMPONENT.fullmatch(_component(tag)), tag
        assert TAG.fullmatch(version_env) and version_env == "1-qa"


def test_plain_names_keep_the_tags_their_images_already_have(registry: Registry) -> None:
    plain = ["churn", "churn-a", "churn.v2", "churn--v2", "fraud-detector-2024", "7"]
    tags = _tags(registry, plain, Stage.PROD)
    assert tags == {name: f"localhost/modelfleet/{name}:1-prod" for name in plain}


def test_a_changed_name_keeps_its_readable_part_and_a_stable_suffix(registry: Registry) -> None:
    first = _tags(registry, ["Churn_Model", "churn-"])
    # The same name always maps to the same tag, so rebuilds replace the model's own image.
    again = {name: image_tag(registry.get(f"{name}:1"), Stage.QA) for name in first}
    assert again == first
    assert re.fullmatch(r"churn-model-[0-9a-f]{8}", _component(first["Churn_Model"]))
    assert re.fullmatch(r"churn-[0-9a-f]{8}", _component(first["churn-"]))
    assert first["Churn_Model"] != first["churn-"]


@pytest.mark.podman
def test_podman_accepts_every_tag(registry: Registry) -> None:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed on this machine")
    for tag in _tags(registry, NAMES).values():
        # Exit 1 is "no such image"; a tag podman cannot parse exits 125 (invalid reference).
        probe = subprocess.run(
            [podman, "image", "exists", tag], capture_output=True, text=True, check=False
        )
        assert probe.returncode == 1, f"{tag}: {probe.stderr}"
