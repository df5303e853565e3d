"""A release's verdict in the model's history: recorded for the version and stage, with its
figures and reasons, while the stage pointer stays where promotion put it."""

from __future__ import annotations

import json

import pytest

import modelfleet as mf
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.deploy import Figures, ReleaseOutcome, Stable, Thresholds, judge
from modelfleet.deploy.figures import Counters
from modelfleet.errors import ModelNotFoundError
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.models import sum_graph

STABLE = Stable(name="adder", version="1", image="localhost/modelfleet/adder:1-prod", replicas=2)


def figures(version: str, requests: float, errors: float) -> Figures:
    counters = Counters(requests=requests, errors=errors, buckets={0.005: requests})
    return Figures.of(version, counters, pods=1, seconds=300)


@pytest.fixture
def adder(registry: Registry) -> Registry:
    """adder 1 and 2, version 2 in prod."""
    for _ in range(2):
        mf.register(sum_graph(), name="adder", registry=registry)
    registry.promote("adder:2", Stage.PROD)
    return registry


def test_a_promotion_is_recorded_with_its_figures_and_the_version_it_replaced(
    adder: Registry,
) -> None:
    verdict = judge(figures("1", 400, 0), figures("2", 200, 0))
    outcome = ReleaseOutcome("promoted", "2", STABLE, verdict)
    assert outcome.replaced == 1
    event = adder.record_event(adder.get("adder:2"), Stage.PROD, outcome.summary(), replaced=1)
    assert (event.stage, event.version, event.previous_version) == ("prod", 2, 1)
    assert event.reason.startswith("release promoted (stable: version 1); promote after 300 s")
    assert "canary/stable 200/400 requests, 5xx 0.00%/0.00%" in event.reason
    assert event.reason.endswith("every rule passed")
    assert adder.history("adder")[-1] == event
    assert adder.get("adder@prod").version == 2  # the stage did not move


def test_a_rollback_is_recorded_with_its_reasons_and_replaces_nothing(adder: Registry) -> None:
    verdict = judge(figures("1", 400, 0), figures("2", 200, 30), Thresholds())
    outcome = ReleaseOutcome("rolled-back", "2", STABLE, verdict)
    assert outcome.replaced is None
    assert not outcome.succeeded
    adder.record_event(adder.get("adder:2"), Stage.PROD, outcome.summary())
    event = adder.history("adder")[-1]
    assert event.previous_version is None
    assert event.reason.startswith("release rolled-back (stable: version 1); rollback after")
    assert "canary 5xx ratio 15.00% above the limit 1.00%" in event.reason
    assert adder.get("adder@prod").version == 2


def test_a_canary_that_never_started_is_summed_up_by_its_failure() -> None:
    note = "canary failed: pod adder-canary-1: the server keeps crashing (CrashLoopBackOff)"
    outcome = ReleaseOutcome("rolled-back", "2", STABLE, note=note)
    assert outcome.summary() == f"release rolled-back (stable: version 1); {note}"
    assert len(ReleaseOutcome("rolled-back", "2", STABLE, note="x" * 5000).summary()) == 1000


def test_an_entry_needs_a_registered_version(adder: Registry) -> None:
    ghost = adder.get("adder:2").model_copy(update={"version": 9})
    with pytest.raises(ModelNotFoundError, match="model 'adder:9' not found"):
        adder.record_event(ghost, Stage.PROD, "release promoted")
    assert len(adder.history("adder")) == 1


def test_history_lists_the_release_beside_the_promotions(
    adder: Registry, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    adder.record_event(
        adder.get("adder:2"), Stage.PROD, "release promoted (stable: version 1)", replaced=1
    )
    capsys.readouterr()
    assert main(["--home", str(settings.home), "history", "adder", "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [(e["stage"], e["version"], e["reason"]) for e in events] == [
        ("prod", 2, "manual"),
        ("prod", 2, "release promoted (stable: version 1)"),
    ]
