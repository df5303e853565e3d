"""Versions on SQLite and PostgreSQL: immutable once written, numbered without gaps, whole."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import IntegrityError

import modelfleet as mf
from modelfleet.registry import ArtifactPayload, Lineage, Registry, Role
from modelfleet.signature import Signature, TensorSpec
from tests.registry.conftest import DraftFactory

THREADS = 4
PER_THREAD = 5


def _source(data: bytes) -> ArtifactPayload:
    return ArtifactPayload(Role.SOURCE, data, "application/octet-stream")


def test_everything_a_draft_records_reads_back_identically(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    draft = make_draft(
        metrics={"accuracy": 0.1 + 0.2, "loss": -1.5e-7},
        params={"layers": [64, 32], "optimizer": {"name": "adam", "lr": 0.001}, "seed": None},
        tags={"équipe": "risque", "owner": "李"},
        lineage=Lineage(
            data_sha256="d" * 64,
            git_commit="c" * 40,
            git_dirty=True,
            parent_version=None,
            source_uri="/data/model.onnx",
            extra={"run": {"id": 7, "notes": ["a", "b"]}},
        ),
        environment={"python": "3.12.1"},
        verification={"max_abs_diff": 0.0, "agreement": 1.0},
    )
    created = sql_registry.create_version(draft, [_source(b"weights")])
    read = sql_registry.get("churn:1")
    assert read == created
    assert read.model_dump(exclude={"version", "created_at", "artifacts", "stages"}) == (
        draft.model_dump()
    )
    assert read.metrics["accuracy"] == 0.1 + 0.2  # JSON keeps every bit of a float
    assert read.created_at.tzinfo is not None
    assert read.created_by == "alice"


def test_a_second_graph_for_a_frozen_version_is_refused_and_nothing_changes(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    onnx = ArtifactPayload(Role.ONNX, b"graph one", "application/onnx")
    version = sql_registry.create_version(
        make_draft(verification={"agreement": 1.0}), [_source(b"src"), onnx]
    )
    other = Signature(inputs=(TensorSpec(name="Z", dtype="int64", shape=(None, 9)),))
    replacement = ArtifactPayload(Role.ONNX, b"graph two", "application/onnx")
    with pytest.raises(mf.RegistryError, match="already has a onnx artifact") as caught:
        sql_registry.attach_frozen(version, replacement, {"agreement": 0.1}, other)
    assert "versions are immutable" in str(caught.value)
    assert "register a new version" in str(caught.value)
    after = sql_registry.get("churn:1")
    assert after == version
    assert sql_registry.read_artifact(after, Role.ONNX) == b"graph one"


def test_attaching_a_graph_fills_only_what_was_missing(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    version = sql_registry.create_version(make_draft(metrics={"f1": 0.7}), [_source(b"src")])
    frozen_signature = Signature(inputs=(TensorSpec(name="X", dtype="float32", shape=(None, 4)),))
    onnx = ArtifactPayload(Role.ONNX, b"the graph", "application/onnx")
    frozen = sql_registry.attach_frozen(version, onnx, {"agreement": 1.0}, frozen_signature)
    assert frozen.version == 1
    assert [a.role for a in frozen.artifacts] == ["source", "onnx"]
    assert frozen.signature == frozen_signature
    assert frozen.verification == {"agreement": 1.0}
    assert (frozen.metrics, frozen.created_at) == (version.metrics, version.created_at)
    assert sql_registry.read_artifact(frozen, Role.ONNX) == b"the graph"
    with pytest.raises(mf.RegistryError, match="versions are immutable"):
        sql_registry.attach_frozen(frozen, onnx, {"agreement": 0.5}, frozen_signature)
    assert sql_registry.get("churn:1").verification == {"agreement": 1.0}


def test_a_failed_registration_leaves_no_trace_and_no_gap(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    # Two artifacts with one role break a constraint after the version row was written.
    clash = [_source(b"one"), _source(b"two")]
    with pytest.raises(IntegrityError):
        sql_registry.create_version(make_draft(), clash)
    assert sql_registry.models() == []
    with pytest.raises(mf.ModelNotFoundError):
        sql_registry.versions("churn")

    assert sql_registry.create_version(make_draft(), [_source(b"one")]).version == 1
    with pytest.raises(IntegrityError):
        sql_registry.create_version(make_draft(), clash)
    assert sql_registry.create_version(make_draft(), [_source(b"two")]).version == 2
    assert [v.version for v in sql_registry.versions("churn")] == [1, 2]
    assert [s.latest_version for s in sql_registry.models()] == [2]


def test_threads_sharing_one_registry_get_distinct_dense_numbers(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    start = threading.Barrier(THREADS)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def register(worker: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                draft = make_draft("fresh", tags={"worker": str(worker), "i": str(i)})
                numbers.append(sql_registry.create_version(draft, []).version)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    total = THREADS * PER_THREAD
    assert sorted(numbers) == list(range(1, total + 1))
    stored = sql_registry.versions("fresh")
    assert len({(v.tags["worker"], v.tags["i"]) for v in stored}) == total
    assert sql_registry.get("fresh").version == total


def test_latest_follows_the_newest_version_and_models_are_listed_by_name(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    for name in ("zeta", "alpha", "zeta", "zeta"):
        sql_registry.create_version(make_draft(name), [])
    mf.promote("zeta:2", to="prod", registry=sql_registry)
    assert sql_registry.get("zeta").version == 3
    summaries = sql_registry.models()
    assert [(s.name, s.latest_version, s.versions) for s in summaries] == [
        ("alpha", 1, 1),
        ("zeta", 3, 3),
    ]
    assert summaries[1].stages == {"prod": 2}
    assert summaries[0].stages == {}
