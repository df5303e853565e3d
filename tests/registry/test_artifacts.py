"""Artifact store: content addressing, atomic writes, digest checks; local disk and real S3."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import FsspecArtifactStore, Registry
from tests.models import sum_graph


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "store"))
    first = store.put_bytes(b"hello")
    again = store.put_bytes(b"hello")
    sha = hashlib.sha256(b"hello").hexdigest()
    assert first == again
    assert first.key == f"sha256/{sha[:2]}/{sha}"
    assert first.size == 5
    assert store.get_bytes(first.key, sha) == b"hello"
    assert (tmp_path / "store" / first.key).read_bytes() == b"hello"


def test_no_partial_file_is_ever_visible(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "store"))
    payload = os.urandom(8 << 20)
    sha = hashlib.sha256(payload).hexdigest()
    final = tmp_path / "store" / f"sha256/{sha[:2]}/{sha}"
    seen_sizes: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if final.exists():
                seen_sizes.add(final.stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    store.put_bytes(payload)
    done.set()
    watcher.join()
    assert seen_sizes <= {len(payload)}
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".incoming-")]


def test_corrupted_artifact_is_detected_and_named(registry: Registry, settings: Settings) -> None:
    version = mf.register(sum_graph(), name="adder", registry=registry)
    record = version.artifact("onnx")
    assert record is not None
    path = Path(settings.artifacts) / record.key
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(mf.ArtifactCorruptedError, match=record.key) as info:
        registry.read_artifact(version, "onnx")
    assert info.value.expected == record.sha256
    with pytest.raises(mf.ArtifactCorruptedError):
        registry.fetch_artifact(version, "onnx", settings.home / "copy.onnx")
    assert not (settings.home / "copy.onnx").exists()


def test_missing_artifact_is_reported(registry: Registry, settings: Settings) -> None:
    version = mf.register(sum_graph(), name="adder", registry=registry)
    record = version.artifact("onnx")
    assert record is not None
    (Path(settings.artifacts) / record.key).unlink()
    with pytest.raises(mf.ArtifactNotFoundError, match="missing from the artifact store"):
        registry.read_artifact(version, "onnx")


def test_fetch_copies_verified_bytes(registry: Registry, settings: Settings) -> None:
    version = mf.register(sum_graph(), name="adder", registry=registry)
    dest = registry.fetch_artifact(version, "onnx", settings.home / "out" / "model.onnx")
    assert dest.read_bytes() == registry.read_artifact(version, "onnx")


@pytest.mark.s3
def test_s3_store_round_trip_over_http(s3_settings: Settings) -> None:
    with Registry.open(s3_settings) as reg:
        version = mf.register(sum_graph(), name="adder", registry=reg)
        record = version.artifact("onnx")
        assert record is not None
        assert record.uri.startswith("s3://")
        assert reg.read_artifact(version, "onnx") == sum_graph().SerializeToString()
        assert reg.get("adder:1").artifacts == version.artifacts


@pytest.mark.s3
def test_s3_corruption_is_detected(s3_settings: Settings) -> None:
    import s3fs

    with Registry.open(s3_settings) as reg:
        version = mf.register(sum_graph(), name="adder", registry=reg)
        record = version.artifact("onnx")
        assert record is not None
        fs = s3fs.S3FileSystem(**s3_settings.artifacts_options)
        fs.pipe(record.uri, b"not the model")
        with pytest.raises(mf.ArtifactCorruptedError, match="s3://"):
            reg.read_artifact(version, "onnx")


@pytest.mark.s3
@pytest.mark.postgres
def test_scaled_setup_postgres_and_s3_together(s3_settings: Settings, postgres_url: str) -> None:
    settings = s3_settings.model_copy(update={"db_url": postgres_url})
    with Registry.open(settings) as reg:
        mf.register(sum_graph(), name="adder", metrics={"mae": 0.0}, registry=reg)
        mf.promote("adder:1", to="qa", registry=reg)
    with Registry.open(settings) as reg:
        version = reg.get("adder@qa")
        assert version.metrics == {"mae": 0.0}
        assert len(reg.read_artifact(version, "onnx")) > 0


def test_unsupported_store_url_is_explained(tmp_path: Path) -> None:
    with pytest.raises(mf.ConfigError, match="unsupported artifact store URL"):
        FsspecArtifactStore("nosuchproto://bucket/x")
