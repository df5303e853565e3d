"""Registry metadata on real SQLite and PostgreSQL: numbering, immutability, stages, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.registry import Registry
from tests.conftest import make_settings
from tests.models import sum_graph


@pytest.fixture
def reg(db_url: str, tmp_path: Path) -> Registry:
    settings = make_settings(tmp_path / "home", db_url=db_url)
    with Registry.open(settings) as opened:
        yield opened


def test_versions_are_numbered_per_name(reg: Registry) -> None:
    graph = sum_graph()
    first = mf.register(graph, name="adder", registry=reg)
    second = mf.register(graph, name="adder", metrics={"mae": 0.1}, registry=reg)
    other = mf.register(graph, name="other", registry=reg)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert [v.version for v in reg.versions("adder")] == [1, 2]
    assert reg.get("adder").version == 2  # latest
    assert reg.get("adder:1").metrics == {}
    assert reg.get("adder:2").metrics == {"mae": 0.1}
    summary = {m.name: m for m in reg.models()}
    assert summary["adder"].latest_version == 2
    assert summary["adder"].versions == 2


def test_version_records_signature_lineage_and_artifacts(reg: Registry) -> None:
    version = mf.register(
        sum_graph(),
        name="adder",
        params={"features": 3},
        tags={"team": "risk"},
        training_data={"X": [[1.0, 2.0, 3.0]]},
        registry=reg,
    )
    assert version.framework == "onnx"
    assert version.signature.describe() == "(X: float32[?, 3]) -> (Y: float32[?, 1])"
    assert version.params == {"features": 3}
    assert version.tags == {"team": "risk"}
    assert version.lineage.data_sha256 is not None
    assert len(version.lineage.data_sha256) == 64
    assert version.lineage.git_commit is None or len(version.lineage.git_commit) == 40
    # The training data also gives the profile served inputs are checked against for drift.
    assert {a.role for a in version.artifacts} == {"source", "onnx", "profile"}
    assert set(json.loads(reg.read_artifact(version, "profile"))["features"]) == {
        f"X[{j}]" for j in range(3)
    }
    assert "onnx" in version.environment
    assert version.created_at.tzinfo is not None
    assert reg.get("adder:1") == version


def test_unknown_references_name_what_exists(reg: Registry) -> None:
    mf.register(sum_graph(), name="adder", registry=reg)
    with pytest.raises(mf.ModelNotFoundError, match="did you mean adder"):
        reg.get("addr")
    with pytest.raises(mf.ModelNotFoundError, match=r"adder:7.*versions 1"):
        reg.get("adder:7")
    with pytest.raises(mf.ModelNotFoundError, match="promote one"):
        reg.get("adder@prod")
    with pytest.raises(mf.ModelNotFoundError):
        reg.versions("nothing")


def test_promote_moves_the_pointer_and_keeps_history(reg: Registry) -> None:
    graph = sum_graph()
    mf.register(graph, name="adder", metrics={"accuracy": 0.95}, registry=reg)
    mf.register(graph, name="adder", metrics={"accuracy": 0.97}, registry=reg)
    mf.promote("adder:1", to="dev", registry=reg)
    mf.promote("adder:1", to="qa", require=["accuracy>=0.9"], reason="nightly eval", registry=reg)
    event = mf.promote("adder:2", to="qa", registry=reg)
    assert event.previous_version == 1
    assert reg.get("adder@qa").version == 2
    assert reg.get("adder@dev").version == 1
    assert reg.get("adder:1").stages == ("dev",)
    history = reg.history("adder")
    assert [(e.stage, e.version, e.previous_version, e.from_stage) for e in history] == [
        ("dev", 1, None, None),
        ("qa", 1, None, "dev"),
        ("qa", 2, 1, None),
    ]
    assert history[1].reason == "nightly eval"
    assert history[0].actor == reg.user


def test_failed_requirement_refuses_and_changes_nothing(reg: Registry) -> None:
    mf.register(sum_graph(), name="adder", metrics={"accuracy": 0.85}, registry=reg)
    with pytest.raises(mf.PromotionRefusedError, match=r"accuracy=0.85 does not satisfy"):
        mf.promote("adder:1", to="prod", require=["accuracy>=0.9"], registry=reg)
    with pytest.raises(mf.PromotionRefusedError, match="'f1' was not recorded"):
        mf.promote("adder:1", to="prod", require=["f1>0.5"], registry=reg)
    assert reg.history("adder") == []
    assert reg.get("adder:1").stages == ()


def test_invalid_requirement_and_stage_are_explained(reg: Registry) -> None:
    mf.register(sum_graph(), name="adder", metrics={"accuracy": 0.95}, registry=reg)
    with pytest.raises(mf.ModelfleetError, match="invalid requirement"):
        mf.promote("adder:1", to="qa", require=["accuracy is high"], registry=reg)
    with pytest.raises(mf.InvalidReferenceError, match="unknown stage"):
        mf.promote("adder:1", to="staging", registry=reg)
    assert reg.history("adder") == []


def test_bad_metrics_and_params_are_refused_before_writing(reg: Registry) -> None:
    with pytest.raises(mf.ModelfleetError, match="metric 'accuracy' must be a number"):
        mf.register(sum_graph(), name="adder", metrics={"accuracy": "high"}, registry=reg)
    with pytest.raises(mf.ModelfleetError, match="params must be JSON"):
        mf.register(sum_graph(), name="adder", params={"fn": object()}, registry=reg)
    with pytest.raises(mf.InvalidReferenceError):
        mf.register(sum_graph(), name="bad name!", registry=reg)
    assert reg.models() == []
