"""Pipelines end to end: steps, caching, validation reports, registration, gate, reproducibility."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.pipeline import load_pipeline, parse_params, run_pipeline
from modelfleet.registry import Registry
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
CHURN = ROOT / "examples" / "churn" / "pipeline.py"
FAST = {"rows": 1500, "n_estimators": 40}


def _quiet(_: str) -> None:
    return None


def test_churn_pipeline_registers_profiles_and_promotes(
    registry: Registry, settings: Settings
) -> None:
    report = run_pipeline(
        load_pipeline(CHURN), dict(FAST), settings=settings, registry=registry, say=_quiet
    )
    assert report.ok, report.error
    assert [s.status for s in report.steps] == ["ran"] * 5
    assert report.metrics["accuracy"] >= 0.9
    version = registry.get(report.version)
    assert version.params == FAST
    assert version.metrics == report.metrics
    assert version.lineage.data_sha256 is not None
    extra = version.lineage.extra
    assert extra["run_id"] == report.run_id
    assert len(extra["code_sha256"]) == 64
    assert report.gate == {"passed": True, "reason": "gate passed: accuracy>=0.9", "stage": "dev"}
    assert registry.get("churn@dev").version == version.version
    profile = json.loads(registry.read_artifact(version, "profile"))
    assert set(profile["features"]) == {"tenure", "monthly", "calls", "plan"}
    assert profile["features"]["plan"]["kind"] == "categorical"
    assert len(profile["features"]["monthly"]["shares"]) >= 5
    assert set(profile["labels"]["shares"]) == {"0", "1"}
    assert registry.history("churn")[0].reason.startswith("gate passed")


def test_unchanged_steps_are_skipped_and_say_so(registry: Registry, settings: Settings) -> None:
    pipeline = load_pipeline(CHURN)
    first = run_pipeline(pipeline, dict(FAST), settings=settings, registry=registry, say=_quiet)
    again = run_pipeline(pipeline, dict(FAST), settings=settings, registry=registry, say=_quiet)
    assert [s.status for s in again.steps] == ["cached"] * 5
    assert again.version == first.version  # the same model is not registered twice
    assert again.gate["reason"].startswith("unchanged")
    changed = run_pipeline(
        pipeline, {**FAST, "n_estimators": 30}, settings=settings, registry=registry, say=_quiet
    )
    assert [s.status for s in changed.steps] == ["cached", "cached", "cached", "ran", "ran"]
    assert changed.version != first.version


def test_a_changed_step_reruns(tmp_path: Path, registry: Registry, settings: Settings) -> None:
    source = textwrap.dedent("""
        from modelfleet.pipeline import Pipeline, step

        @step
        def numbers(n: int = 5):
            return list(range(n))

        @step
        def total(numbers):
            return {"sum": sum(numbers)}

        pipeline = Pipeline(name="tiny", steps=[numbers, total])
    """)
    path = tmp_path / "tiny.py"
    path.write_text(source)
    first = run_pipeline(load_pipeline(path), {}, settings=settings, registry=registry, say=_quiet)
    path.write_text(source.replace("sum(numbers)", "sum(numbers) * 2"))
    second = run_pipeline(load_pipeline(path), {}, settings=settings, registry=registry, say=_quiet)
    assert [s.status for s in first.steps] == ["ran", "ran"]
    assert [s.status for s in second.steps] == ["cached", "ran"]


def test_validation_failure_stops_the_run_with_a_report(
    registry: Registry, settings: Settings
) -> None:
    report = run_pipeline(
        load_pipeline(CHURN),
        {**FAST, "corrupt": 3},
        settings=settings,
        registry=registry,
        say=_quiet,
    )
    assert not report.ok
    assert "data validation failed: 3 failures in columns tenure" in report.error
    assert [(f["column"], f["row"], f["value"]) for f in report.validation] == [
        ("tenure", 0, -5),
        ("tenure", 1, -5),
        ("tenure", 2, -5),
    ]
    assert all("greater_than_or_equal_to(0)" in f["check"] for f in report.validation)
    assert [s.status for s in report.steps] == ["ran", "failed"]
    assert report.version is None
    assert registry.models() == []


def test_dataset_level_checks_report_too(registry: Registry, settings: Settings) -> None:
    report = run_pipeline(
        load_pipeline(CHURN),
        {**FAST, "rows": 100},
        settings=settings,
        registry=registry,
        say=_quiet,
    )
    assert not report.ok
    assert any("rows>=500" in f["check"] for f in report.validation)


def test_gate_failure_keeps_the_version_out_of_dev(
    tmp_path: Path, registry: Registry, settings: Settings
) -> None:
    path = tmp_path / "strict.py"
    path.write_text(CHURN.read_text().replace('gate=["accuracy>=0.9"]', 'gate=["accuracy>=0.999"]'))
    report = run_pipeline(
        load_pipeline(path), dict(FAST), settings=settings, registry=registry, say=_quiet
    )
    assert report.ok
    assert report.gate["passed"] is False
    assert "does not satisfy accuracy>=0.999" in report.gate["reason"]
    assert registry.get(report.version).stages == ()


def test_same_data_code_params_and_seed_give_the_same_metrics(tmp_path: Path) -> None:
    metrics = []
    for i in range(2):
        settings = make_settings(tmp_path / f"home{i}")
        report = run_pipeline(
            load_pipeline(CHURN),
            {**FAST, "seed": 7},
            settings=settings,
            use_cache=False,
            say=_quiet,
        )
        metrics.append(report.metrics)
    assert metrics[0] == metrics[1]
    other = run_pipeline(
        load_pipeline(CHURN),
        {**FAST, "seed": 8},
        settings=make_settings(tmp_path / "home3"),
        say=_quiet,
    )
    assert other.metrics != metrics[0]


def test_missing_inputs_and_bad_files_are_explained(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "broken.py"
    path.write_text(
        textwrap.dedent("""
        from modelfleet.pipeline import Pipeline, step

        @step
        def needs(threshold):
            return threshold

        pipeline = Pipeline(name="broken", steps=[needs])
    """)
    )
    with pytest.raises(mf.ModelfleetError, match=r"needs 'threshold'.*--param threshold"):
        run_pipeline(load_pipeline(path), {}, settings=settings, say=_quiet)
    with pytest.raises(mf.ModelfleetError, match="does not exist"):
        load_pipeline(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(mf.ModelfleetError, match="defines no 'pipeline'"):
        load_pipeline(tmp_path / "empty.py")
    assert parse_params(["n=3", "lr=0.5", "name=abc", "flag=true"]) == {
        "n": 3,
        "lr": 0.5,
        "name": "abc",
        "flag": True,
    }
    with pytest.raises(mf.ModelfleetError, match="invalid param"):
        parse_params(["novalue"])
