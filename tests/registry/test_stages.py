"""Stages on SQLite and PostgreSQL: pointers, audit trail, requirements refused with figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import modelfleet as mf
from modelfleet.refs import Stage
from modelfleet.registry import ModelVersion, Registry
from tests.registry.conftest import DraftFactory


def _register(
    reg: Registry, make_draft: DraftFactory, name: str = "churn", **metrics: float
) -> ModelVersion:
    return reg.create_version(make_draft(name, metrics=metrics), [])


def test_a_version_walks_every_stage_and_lists_them_in_order(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    _register(sql_registry, make_draft)
    # Promoted out of order on purpose: the record lists stages in pipeline order.
    for stage in (Stage.PROD, Stage.DEV, Stage.UAT, Stage.QA):
        sql_registry.promote("churn:1", stage)
    assert sql_registry.get("churn:1").stages == ("dev", "qa", "uat", "prod")
    for stage in Stage:
        assert sql_registry.get(f"churn@{stage.value}").version == 1
    assert [e.stage for e in sql_registry.history("churn")] == ["prod", "dev", "uat", "qa"]


def test_moving_a_stage_takes_it_away_from_the_previous_version(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    for _ in range(3):
        _register(sql_registry, make_draft)
    sql_registry.promote("churn:1", Stage.PROD)
    sql_registry.promote("churn:1", Stage.QA)
    sql_registry.promote("churn:2", Stage.QA)
    event = sql_registry.promote("churn@qa", Stage.PROD, reason="qa sign-off")
    assert (event.version, event.previous_version, event.from_stage) == (2, 1, "qa")
    assert sql_registry.get("churn:1").stages == ()
    assert sql_registry.get("churn:2").stages == ("qa", "prod")
    assert sql_registry.get("churn:3").stages == ()
    assert sql_registry.models()[0].stages == {"qa": 2, "prod": 2}


def test_history_is_the_full_ordered_trail_of_one_model(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    _register(sql_registry, make_draft, accuracy=0.95)
    _register(sql_registry, make_draft, "fraud")
    sql_registry.promote("churn:1", Stage.DEV)
    sql_registry.promote("fraud:1", Stage.PROD)
    sql_registry.promote("churn:1", Stage.QA, require=["accuracy>=0.9"])
    sql_registry.promote("churn:1", Stage.QA, reason="re-run after the incident")
    history = sql_registry.history("churn")
    assert [(e.name, e.stage, e.version, e.previous_version) for e in history] == [
        ("churn", "dev", 1, None),
        ("churn", "qa", 1, None),
        ("churn", "qa", 1, 1),
    ]
    assert [e.reason for e in history] == [
        "manual",
        "requirements met: accuracy>=0.9",
        "re-run after the incident",
    ]
    assert {e.actor for e in history} == {"alice"}
    times = [e.created_at for e in history]
    assert times == sorted(times)
    assert all(before <= t <= datetime.now(UTC) for t in times)
    assert [e.stage for e in sql_registry.history("fraud")] == ["prod"]


def test_every_failed_requirement_is_reported_with_its_figure(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    _register(sql_registry, make_draft, accuracy=0.85, latency_ms=12.5)
    with pytest.raises(mf.PromotionRefusedError) as caught:
        sql_registry.promote(
            "churn:1", Stage.PROD, require=["accuracy>=0.9, latency_ms<10", "f1>0.5"]
        )
    error = caught.value
    assert (error.ref, error.stage) == ("churn:1", "prod")
    assert error.failures == [
        "accuracy=0.85 does not satisfy accuracy>=0.9",
        "latency_ms=12.5 does not satisfy latency_ms<10",
        "metric 'f1' was not recorded (recorded: accuracy, latency_ms)",
    ]
    message = str(error)
    assert message.startswith("promotion of churn:1 to prod refused: accuracy=0.85")
    assert "change --require" in message
    assert sql_registry.history("churn") == []
    assert sql_registry.get("churn:1").stages == ()


def test_a_refused_promotion_leaves_the_current_holder_in_place(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    _register(sql_registry, make_draft, accuracy=0.95)
    _register(sql_registry, make_draft, accuracy=0.80)
    sql_registry.promote("churn:1", Stage.PROD, require=["accuracy>=0.9"])
    with pytest.raises(mf.PromotionRefusedError, match=r"accuracy=0\.8 does not satisfy"):
        sql_registry.promote("churn", Stage.PROD, require=["accuracy>=0.9"])
    assert sql_registry.get("churn@prod").version == 1
    assert len(sql_registry.history("churn")) == 1


@pytest.mark.parametrize(
    ("requirement", "passes"),
    [
        ("accuracy>=0.9", True),
        ("accuracy>0.9", False),
        ("accuracy<=0.9", True),
        ("accuracy<0.9", False),
        ("accuracy==0.9", True),
        ("accuracy==9e-1", True),
        ("accuracy>=0.90001", False),
    ],
)
def test_thresholds_are_compared_exactly_at_the_boundary(
    registry: Registry, make_draft: DraftFactory, requirement: str, passes: bool
) -> None:
    _register(registry, make_draft, accuracy=0.9)
    if passes:
        assert registry.promote("churn:1", Stage.QA, require=[requirement]).version == 1
    else:
        with pytest.raises(mf.PromotionRefusedError, match=r"accuracy=0\.9 does not satisfy"):
            registry.promote("churn:1", Stage.QA, require=[requirement])
        assert registry.history("churn") == []


def test_promoting_a_version_that_does_not_exist_changes_nothing(
    sql_registry: Registry, make_draft: DraftFactory
) -> None:
    _register(sql_registry, make_draft)
    sql_registry.promote("churn:1", Stage.QA)
    with pytest.raises(mf.ModelNotFoundError, match=r"'churn:5' not found \(known: versions 1\)"):
        sql_registry.promote("churn:5", Stage.PROD)
    with pytest.raises(mf.ModelNotFoundError, match="no version of churn is in uat"):
        sql_registry.promote("churn@uat", Stage.PROD)
    assert [e.stage for e in sql_registry.history("churn")] == ["qa"]
