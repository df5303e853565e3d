"""What users see when a lookup or an artifact read fails: what was wrong, and what to do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import ArtifactPayload, Lineage, Registry, Role
from tests.registry.conftest import DraftFactory


def _payload(role: str, data: bytes) -> ArtifactPayload:
    return ArtifactPayload(role, data, "application/octet-stream")


def test_an_unknown_name_suggests_the_close_ones(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    for name in ("churn", "churn-v2", "fraud"):
        sql_registry.create_version(make_draft(name), [])
    with pytest.raises(mf.ModelNotFoundError, match=r"model 'chrun' not found") as caught:
        sql_registry.get("chrun")
    suggested = str(caught.value).split("did you mean ", 1)[1].rstrip("?").split(", ")
    assert set(suggested) == {"churn", "churn-v2"}
    assert caught.value.ref == "chrun"
    with pytest.raises(mf.ModelNotFoundError, match="did you mean fraud"):
        sql_registry.history("frau")
    with pytest.raises(mf.ModelNotFoundError, match="did you mean churn"):
        sql_registry.versions("Churn")


def test_an_unknown_name_with_nothing_close_points_at_the_model_list(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    with pytest.raises(mf.ModelNotFoundError, match="run 'modelfleet models' to list them"):
        sql_registry.get("churn")  # an empty registry
    sql_registry.create_version(make_draft("churn"), [])
    with pytest.raises(mf.ModelNotFoundError) as caught:
        sql_registry.get("xgboost-ranker@prod")
    assert "did you mean" not in str(caught.value)
    assert "run 'modelfleet models' to list them" in str(caught.value)


@pytest.mark.parametrize(
    ("count", "known"), [(1, "versions 1"), (2, "versions 1, 2"), (4, "versions 1-4")]
)
def test_an_unknown_version_lists_the_versions_that_exist(
    sql_registry: Registry, make_draft: DraftFactory, count: int, known: str
) -> None:
    for _ in range(count):
        sql_registry.create_version(make_draft(), [])
    with pytest.raises(mf.ModelNotFoundError) as caught:
        sql_registry.get("churn:9")
    assert str(caught.value) == (
        f"model 'churn:9' not found (known: {known}); run 'modelfleet versions churn'"
    )


def test_an_empty_stage_says_how_to_fill_it(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    sql_registry.create_version(make_draft(), [])
    with pytest.raises(mf.ModelNotFoundError) as caught:
        sql_registry.get("churn@uat")
    assert "no version of churn is in uat" in str(caught.value)
    assert "modelfleet promote churn:N --to uat" in str(caught.value)


def test_a_missing_role_names_the_roles_the_version_has(
    registry: Registry, make_draft: DraftFactory, tmp_path: Path
) -> None:
    version = registry.create_version(
        make_draft(), [_payload(Role.SOURCE, b"src"), _payload(Role.SAMPLE, b"npz")]
    )
    with pytest.raises(mf.RegistryError, match=r"churn:1 has no onnx artifact") as caught:
        registry.read_artifact(version, Role.ONNX)
    assert "(it has: source, sample)" in str(caught.value)
    assert "run 'modelfleet freeze churn:1'" in str(caught.value)
    bare = registry.create_version(make_draft(), [])
    with pytest.raises(mf.RegistryError, match=r"churn:2 has no profile artifact \(it has: none\)"):
        registry.fetch_artifact(bare, Role.PROFILE, tmp_path / "profile.json")
    assert not (tmp_path / "profile.json").exists()


def _stored_file(settings: Settings, version: mf.ModelVersion, role: str) -> Path:
    record = version.artifact(role)
    assert record is not None
    return Path(settings.artifacts) / record.key


def test_a_corrupted_file_is_refused_with_both_digests(
    registry: Registry, settings: Settings, make_draft: DraftFactory
) -> None:
    original = b"the trained weights" * 100
    version = registry.create_version(make_draft(), [_payload(Role.SOURCE, original)])
    path = _stored_file(settings, version, Role.SOURCE)
    damaged = original[:-1] + b"!"
    path.write_bytes(damaged)
    with pytest.raises(mf.ArtifactCorruptedError) as caught:
        registry.read_artifact(version, Role.SOURCE)
    error = caught.value
    expected, actual = hashlib.sha256(original).hexdigest(), hashlib.sha256(damaged).hexdigest()
    assert (error.expected, error.actual) == (expected, actual)
    assert str(path) in error.uri
    assert f"has sha256 {actual[:12]}…, expected {expected[:12]}…" in str(error)
    assert "restore the file from a backup" in str(error)
    path.write_bytes(original)  # restored from a backup, it reads again
    assert registry.read_artifact(version, Role.SOURCE) == original


def test_a_truncated_file_is_refused_as_corrupted(
    registry: Registry, settings: Settings, make_draft: DraftFactory
) -> None:
    version = registry.create_version(make_draft(), [_payload(Role.SOURCE, b"x" * 4096)])
    path = _stored_file(settings, version, Role.SOURCE)
    path.write_bytes(b"x" * 1000)
    with pytest.raises(mf.ArtifactCorruptedError):
        registry.read_artifact(version, Role.SOURCE)
    path.write_bytes(b"")
    with pytest.raises(mf.ArtifactCorruptedError, match="e3b0c44298fc"):  # sha256 of nothing
        registry.read_artifact(version, Role.SOURCE)


def test_a_failed_fetch_keeps_the_previous_copy_and_leaves_no_temporary_file(
    registry: Registry, settings: Settings, make_draft: DraftFactory, tmp_path: Path
) -> None:
    version = registry.create_version(make_draft(), [_payload(Role.SOURCE, b"v1 weights")])
    dest = tmp_path / "deploy" / "model.bin"
    registry.fetch_artifact(version, Role.SOURCE, dest)
    path = _stored_file(settings, version, Role.SOURCE)
    path.write_bytes(b"tampered")
    with pytest.raises(mf.ArtifactCorruptedError):
        registry.fetch_artifact(version, Role.SOURCE, dest)
    assert dest.read_bytes() == b"v1 weights"
    path.unlink()
    with pytest.raises(mf.ArtifactNotFoundError, match="missing from the artifact store") as caught:
        registry.fetch_artifact(version, Role.SOURCE, dest)
    assert "check MODELFLEET_ARTIFACTS" in str(caught.value)
    assert dest.read_bytes() == b"v1 weights"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]


def test_identical_bytes_of_two_versions_are_stored_once(
    registry: Registry, settings: Settings, make_draft: DraftFactory
) -> None:
    first = registry.create_version(make_draft(), [_payload(Role.SOURCE, b"same")])
    second = registry.create_version(make_draft("other"), [_payload(Role.SOURCE, b"same")])
    assert first.artifacts[0].key == second.artifacts[0].key
    stored = [p for p in Path(settings.artifacts).rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [b"same"]


def test_a_quantized_variant_reads_the_profile_of_its_parent(
    registry: Registry, make_draft: DraftFactory
) -> None:
    parent = registry.create_version(make_draft(), [_payload(Role.PROFILE, b'{"features": {}}')])
    child = registry.create_version(make_draft(lineage=Lineage(parent_version=parent.version)), [])
    grandchild = registry.create_version(
        make_draft(lineage=Lineage(parent_version=child.version)), []
    )
    assert registry.reference_profile(grandchild) == b'{"features": {}}'
    orphan = registry.create_version(make_draft("solo"), [])
    assert registry.reference_profile(orphan) is None
    # A lineage loop (a hand-edited record) ends the walk instead of spinning forever.
    looped = registry.create_version(make_draft("loop", lineage=Lineage(parent_version=1)), [])
    assert registry.reference_profile(looped) is None
