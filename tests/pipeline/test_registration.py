"""What a run registers, when the gate promotes it, and what stops a registration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.pipeline import Pipeline, Registration, run_pipeline, step
from modelfleet.registry import Registry


@step(outputs=("X", "y"))
def data(rows: int = 80, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3)).astype(np.float32)
    return X, (X[:, 0] + 0.2 * X[:, 1] > 0).astype(np.int64)


@step
def model(X: Any, y: Any, C: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C).fit(X, y)


@step
def scores(model: Any, X: Any, y: Any) -> dict[str, float]:
    return {"accuracy": float(model.score(X, y))}


REGISTRATION = Registration(name="toy", model="model", metrics="scores", sample="X", labels="y")


def _pipeline(**options: Any) -> Pipeline:
    options.setdefault("register", REGISTRATION)
    return Pipeline(name="toy-train", steps=[data, model, scores], **options)


def _run(
    pipeline: Pipeline, registry: Registry, settings: Settings, lines: list[str] | None = None
) -> Any:
    say = lines.append if lines is not None else (lambda _: None)
    return run_pipeline(pipeline, {"C": 0.5}, settings=settings, registry=registry, say=say)


def test_a_passing_gate_promotes_to_the_chosen_stage_and_records_the_run(
    registry: Registry, settings: Settings
) -> None:
    lines: list[str] = []
    pipeline = _pipeline(gate=["accuracy>=0.6"], promote_to="qa")
    report = run_pipeline(
        pipeline,
        {"C": 0.5},
        settings=settings,
        registry=registry,
        run_id="run-42",
        say=lines.append,
    )
    assert report.ok and report.version == "toy:1"
    assert report.gate == {"passed": True, "reason": "gate passed: accuracy>=0.6", "stage": "qa"}
    version = registry.get("toy@qa")
    assert version.version == 1
    assert version.params == {"C": 0.5}
    assert version.metrics == report.metrics
    assert version.tags == {"pipeline": "toy-train", "run": "run-42"}
    assert version.lineage.extra["run_id"] == "run-42"
    assert version.lineage.extra["pipeline_source"] is None  # built in code, not loaded
    assert registry.history("toy")[0].reason == "gate passed: accuracy>=0.6 (run run-42)"
    accuracy = report.metrics["accuracy"]
    assert lines[-2:] == [
        f"  registered toy:1 with accuracy={accuracy:.4f}",
        "  gate: promoted toy:1 to qa (gate passed: accuracy>=0.6)",
    ]


def test_without_a_gate_the_version_goes_to_dev(registry: Registry, settings: Settings) -> None:
    report = _run(_pipeline(), registry, settings)
    assert report.gate == {"passed": True, "reason": "no gate", "stage": "dev"}
    assert registry.get("toy@dev").ref == report.version


def test_a_gate_on_a_metric_no_step_records_keeps_the_version_unpromoted(
    registry: Registry, settings: Settings
) -> None:
    lines: list[str] = []
    report = _run(_pipeline(gate=["accuracy>=0.5", "f1>=0.5"]), registry, settings, lines)
    assert report.ok
    assert report.gate["passed"] is False and report.gate["stage"] is None
    assert report.gate["reason"] == "metric 'f1' was not recorded (recorded: accuracy)"
    assert registry.get(report.version).stages == ()
    assert lines[-1] == "  gate: not promoted (metric 'f1' was not recorded (recorded: accuracy))"
    with pytest.raises(mf.ModelNotFoundError):
        registry.get("toy@dev")


def test_several_failing_requirements_are_all_named(registry: Registry, settings: Settings) -> None:
    report = _run(_pipeline(gate=["accuracy>1.0, accuracy<0.0"]), registry, settings)
    accuracy = report.metrics["accuracy"]
    assert report.gate["reason"] == (
        f"accuracy={accuracy:g} does not satisfy accuracy>1; "
        f"accuracy={accuracy:g} does not satisfy accuracy<0"
    )


def test_registration_of_outputs_no_step_returns_registers_nothing(
    registry: Registry, settings: Settings
) -> None:
    spec = Registration(name="toy", model="model", metrics="evaluation", sample="features")
    with pytest.raises(mf.ModelfleetError) as caught:
        _run(_pipeline(register=spec), registry, settings)
    assert "registration needs outputs ['evaluation', 'features']" in str(caught.value)
    assert registry.models() == []


def test_a_pipeline_without_registration_only_runs_its_steps(
    registry: Registry, settings: Settings
) -> None:
    report = _run(_pipeline(register=None, gate=["accuracy>=0.99"]), registry, settings)
    assert report.ok
    assert [s.status for s in report.steps] == ["ran", "ran", "ran"]
    assert (report.version, report.gate, report.metrics) == (None, {}, {})
    assert registry.models() == []


def test_a_new_evaluation_of_the_same_model_registers_no_new_version(
    registry: Registry, settings: Settings
) -> None:
    first = _run(_pipeline(), registry, settings)

    @step(name="scores")
    def stricter(model: Any, X: Any, y: Any) -> dict[str, float]:
        return {"accuracy": float(model.score(X[:40], y[:40]))}

    lines: list[str] = []
    pipeline = Pipeline(name="toy-train", steps=[data, model, stricter], register=REGISTRATION)
    again = _run(pipeline, registry, settings, lines)
    assert [s.status for s in again.steps] == ["cached", "cached", "ran"]
    assert again.version == first.version == "toy:1"
    assert again.gate == {"passed": None, "reason": "unchanged: toy:1 holds this model"}
    assert lines[-1] == "  unchanged: toy:1 already holds this model; nothing registered"
    assert [v.version for v in registry.versions("toy")] == [1]
    assert registry.get("toy:1").metrics == first.metrics  # the version itself is immutable
