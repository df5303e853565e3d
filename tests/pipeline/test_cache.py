"""Running steps: how inputs are found, what the step cache reuses, and how failures surface."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.errors import ArtifactCorruptedError
from modelfleet.pipeline import Column, DataSchema, Pipeline, run_pipeline, step, validate
from modelfleet.registry import Registry
from tests.conftest import make_settings


def _run(pipeline: Pipeline, registry: Registry, settings: Settings, **params: Any) -> Any:
    return run_pipeline(pipeline, params, settings=settings, registry=registry, say=lambda _: None)


def _statuses(report: Any) -> list[str]:
    return [s.status for s in report.steps]


@step
def base(n: int = 4) -> list[int]:
    return list(range(n))


@step
def scaled(base: list[int], factor: int = 2) -> dict[str, int]:
    return {"total": sum(base) * factor}


def test_inputs_come_from_earlier_outputs_then_params_then_defaults(
    registry: Registry, settings: Settings
) -> None:
    seen: list[tuple[Any, ...]] = []

    @step(cache=False)
    def probe(base: list[int], scaled: dict[str, int], factor: int = 9, label: str = "x"):
        seen.append((base, scaled, factor, label))
        return label

    pipeline = Pipeline(name="chain", steps=[base, scaled, probe])
    # "base" is both a param and an earlier output: the step's output wins.
    report = _run(pipeline, registry, settings, factor=3, base=[100])
    assert seen == [([0, 1, 2, 3], {"total": 18}, 3, "x")]
    assert report.ok and report.params == {"factor": 3, "base": [100]}
    assert [(s.name, s.outputs) for s in report.steps] == [
        ("base", {"base": "list"}),
        ("scaled", {"scaled": "dict(1 keys)"}),
        ("probe", {"probe": "str"}),
    ]


def test_a_param_equal_to_the_default_reuses_the_cache_and_a_new_value_does_not(
    registry: Registry, settings: Settings
) -> None:
    pipeline = Pipeline(name="chain", steps=[base, scaled])
    assert _statuses(_run(pipeline, registry, settings)) == ["ran", "ran"]
    assert _statuses(_run(pipeline, registry, settings, n=4, factor=2)) == ["cached", "cached"]
    assert _statuses(_run(pipeline, registry, settings, factor=5)) == ["cached", "ran"]
    # a param no step reads changes nothing
    assert _statuses(_run(pipeline, registry, settings, unused=1)) == ["cached", "cached"]
    assert _statuses(_run(pipeline, registry, settings, n=5)) == ["ran", "ran"]


def test_an_uncached_reader_lets_later_steps_reuse_work_until_the_file_changes(
    tmp_path: Path, registry: Registry, settings: Settings
) -> None:
    calls: list[int] = []

    @step(cache=False)
    def rows(data: str) -> list[int]:
        return [int(x) for x in Path(data).read_text().split()]

    @step
    def summed(rows: list[int]) -> int:
        calls.append(len(rows))
        return sum(rows)

    data = tmp_path / "rows.txt"
    data.write_text("1 2 3")
    pipeline = Pipeline(name="reader", steps=[rows, summed])
    first = _run(pipeline, registry, settings, data=str(data))
    again = _run(pipeline, registry, settings, data=str(data))
    data.write_text("1 2 3 4")
    changed = _run(pipeline, registry, settings, data=str(data))
    assert (_statuses(first), _statuses(again), _statuses(changed)) == (
        ["ran", "ran"],
        ["ran", "cached"],
        ["ran", "ran"],
    )
    assert calls == [3, 4]


def test_use_cache_false_runs_every_step_and_gives_the_same_values(
    registry: Registry, settings: Settings
) -> None:
    received: list[dict[str, int]] = []

    @step(cache=False)
    def sink(scaled: dict[str, int]) -> int:
        received.append(scaled)
        return 0

    pipeline = Pipeline(name="chain", steps=[base, scaled, sink])
    _run(pipeline, registry, settings)
    fresh = run_pipeline(
        pipeline, {}, settings=settings, registry=registry, use_cache=False, say=lambda _: None
    )
    assert _statuses(fresh) == ["ran", "ran", "ran"]
    assert received == [{"total": 12}, {"total": 12}]


def test_cached_outputs_reach_later_steps_as_equal_values(
    registry: Registry, settings: Settings
) -> None:
    from sklearn.linear_model import LogisticRegression

    received: list[dict[str, Any]] = []

    @step(outputs=("table", "matrix", "clf", "info"))
    def make(seed: int = 0) -> tuple[Any, ...]:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(40, 2)).astype(np.float32)
        clf = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
        table = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, 1.5, -2.0], "s": ["a", "b", "c"]})
        return table, X, clf, {"classes": 2, "names": ["neg", "pos"], "score": 0.75}

    @step(cache=False)
    def use(table: Any, matrix: Any, clf: Any, info: Any) -> int:
        received.append(
            {"table": table, "matrix": matrix, "pred": clf.predict_proba(matrix), "info": info}
        )
        return 0

    pipeline = Pipeline(name="kinds", steps=[make, use])
    _run(pipeline, registry, settings)
    assert _statuses(_run(pipeline, registry, settings)) == ["cached", "ran"]
    fresh, cached = received
    pd.testing.assert_frame_equal(cached["table"], fresh["table"])
    assert cached["matrix"].dtype == np.float32
    np.testing.assert_array_equal(cached["matrix"], fresh["matrix"])
    np.testing.assert_array_equal(cached["pred"], fresh["pred"])
    assert cached["info"] == fresh["info"]


def test_a_failing_step_raises_its_own_error_and_earlier_work_is_kept(
    registry: Registry, settings: Settings
) -> None:
    @step
    def flaky(base: list[int], fail: bool = False) -> int:
        if fail:
            raise RuntimeError("the warehouse is down")
        return len(base)

    pipeline = Pipeline(name="flaky", steps=[base, flaky])
    with pytest.raises(RuntimeError, match="the warehouse is down"):
        _run(pipeline, registry, settings, fail=True)
    retry = _run(pipeline, registry, settings)
    assert _statuses(retry) == ["cached", "ran"]
    assert registry.models() == []


@pytest.mark.parametrize("result", ["one", ("a", "b", "c"), ["a"]])
def test_a_step_returning_the_wrong_number_of_outputs_is_named(
    registry: Registry, settings: Settings, result: Any
) -> None:
    @step(outputs=("X", "y"))
    def pair() -> Any:
        return result

    with pytest.raises(mf.ModelfleetError, match=r"step 'pair' must return 2 values \('X', 'y'\)"):
        _run(Pipeline(name="pair", steps=[pair]), registry, settings)


@pytest.mark.parametrize("cache", [True, False])
def test_an_output_that_cannot_be_stored_safely_is_refused_with_the_types_to_use(
    registry: Registry, settings: Settings, cache: bool
) -> None:
    @step(cache=cache)
    def handle() -> Any:
        return {1, 2}

    with pytest.raises(mf.ModelfleetError) as caught:
        _run(Pipeline(name="odd", steps=[handle]), registry, settings)
    assert "cannot store a step output of type set" in str(caught.value)
    assert caught.value.hint == (
        "return arrays, DataFrames, scikit-learn models or JSON values from steps"
    )


def test_a_tampered_cache_entry_is_detected_not_used(
    registry: Registry, settings: Settings
) -> None:
    pipeline = Pipeline(name="chain", steps=[base, scaled])
    _run(pipeline, registry, settings)
    tampered = []
    for path in Path(settings.artifacts).rglob("*"):
        if path.is_file() and path.read_bytes() == b"[0, 1, 2, 3]":
            path.write_bytes(b"[9, 9, 9, 9]")
            tampered.append(path)
    assert len(tampered) == 1
    with pytest.raises(ArtifactCorruptedError) as caught:
        _run(pipeline, registry, settings)
    assert tampered[0].name in str(caught.value)


def test_a_validation_failure_is_a_report_that_jobs_can_store(
    registry: Registry, settings: Settings
) -> None:
    schema = DataSchema(columns={"v": Column("int", min=0)})

    @step
    def batch(bad: int = 60) -> pd.DataFrame:
        return pd.DataFrame({"v": [-1] * bad + [1] * 5})

    @step
    def checked(batch: pd.DataFrame) -> pd.DataFrame:
        return validate(batch, schema)

    lines: list[str] = []
    pipeline = Pipeline(name="checked", steps=[batch, checked, scaled])
    report = run_pipeline(pipeline, {}, settings=settings, registry=registry, say=lines.append)
    assert not report.ok
    assert report.error.startswith("step 'checked': data validation failed: 60 failures")
    assert [(s.name, s.status) for s in report.steps] == [("batch", "ran"), ("checked", "failed")]
    assert re.fullmatch(r"  batch: ran in \d+\.\d\d s", lines[0])
    assert lines[1].startswith("  checked: FAILED data validation failed")
    stored = json.loads(json.dumps(report.as_dict()))
    assert len(report.validation) == 60
    assert len(stored["validation"]) == 50  # a job's result keeps the first 50
    assert stored["validation"][0] == {
        "column": "v",
        "check": "greater_than_or_equal_to(0)",
        "row": 0,
        "value": -1,
    }
    assert stored["error"] == report.error and stored["version"] is None


def test_the_cache_is_shared_by_registries_on_one_database_even_when_they_race(
    tmp_path: Path, db_url: str
) -> None:
    settings = make_settings(tmp_path / "home", db_url=db_url)
    barrier = threading.Barrier(2, timeout=30)

    @step
    def slow_total(base: list[int]) -> int:
        barrier.wait()  # both runs compute, then both store the same entry
        return sum(base)

    pipeline = Pipeline(name="race", steps=[base, slow_total])
    results: list[Any] = []

    def worker() -> None:
        with Registry.open(settings) as reg:
            try:
                results.append(_statuses(_run(pipeline, reg, settings)))
            except Exception as exc:  # surfaced by the assertion below
                results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(r, list) and r[1] == "ran" for r in results), results
    assert len(results) == 2
    with Registry.open(settings) as third:
        assert _statuses(_run(pipeline, third, settings)) == ["cached", "cached"]
