"""The step cache gives back what a fresh run gives, and never a stale or damaged entry."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.errors import ArtifactCorruptedError
from modelfleet.pipeline import Pipeline, run_pipeline, step
from modelfleet.registry import Registry


def _run(pipeline: Pipeline, registry: Registry, settings: Settings, **options: Any) -> Any:
    return run_pipeline(
        pipeline, {}, settings=settings, registry=registry, say=lambda _: None, **options
    )


def _statuses(report: Any) -> list[str]:
    return [s.status for s in report.steps]


def _stored_files(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.artifacts).rglob("*") if p.is_file()]


def _same(cached: Any, fresh: Any) -> None:
    assert type(cached) is type(fresh)
    if isinstance(fresh, pd.DataFrame):
        pd.testing.assert_frame_equal(cached, fresh, check_exact=True)
        for column in range(fresh.shape[1]):  # object columns: each value keeps its type
            assert list(map(type, cached.iloc[:, column])) == list(map(type, fresh.iloc[:, column]))
    elif isinstance(fresh, pd.Series):
        pd.testing.assert_series_equal(cached, fresh, check_exact=True)
    elif isinstance(fresh, pd.Index):
        pd.testing.assert_index_equal(cached, fresh, exact=True)
    else:
        assert cached.dtype == fresh.dtype and cached.shape == fresh.shape
        assert cached.tolist() == fresh.tolist()


def _outputs_twice(make: Any, registry: Registry, settings: Settings) -> tuple[Any, Any]:
    seen: list[Any] = []

    @step(cache=False)
    def look(value: Any) -> int:
        seen.append(value)
        return 0

    pipeline = Pipeline(name="fidelity", steps=[step(name="value")(make), look])
    assert _statuses(_run(pipeline, registry, settings)) == ["ran", "ran"]
    assert _statuses(_run(pipeline, registry, settings)) == ["cached", "ran"]
    fresh, cached = seen
    return fresh, cached


def test_a_cached_series_and_an_indexed_frame_come_back_as_they_were(
    registry: Registry, settings: Settings
) -> None:
    seen: list[Any] = []

    @step(outputs=("frame", "labels"))
    def load() -> Any:
        frame = pd.DataFrame({"a": [1, 2, 3]}, index=[10, 20, 30])
        return frame, pd.Series([0, 1, 0], name="y")

    @step(cache=False)
    def look(frame: Any, labels: Any) -> int:
        seen.append((frame, labels))
        return 0

    pipeline = Pipeline(name="t", steps=[load, look])
    _run(pipeline, registry, settings)
    assert _statuses(_run(pipeline, registry, settings)) == ["cached", "ran"]
    (frame, labels), (cached_frame, cached_labels) = seen
    assert type(cached_labels) is pd.Series and cached_labels.name == "y"
    pd.testing.assert_series_equal(cached_labels, labels)
    assert cached_frame.index.tolist() == [10, 20, 30]
    pd.testing.assert_frame_equal(cached_frame, frame)


VALUES: dict[str, Any] = {
    "dtypes and labels": lambda: pd.DataFrame(
        {
            "f32": np.array([1.5, 2.5, 3.5], dtype=np.float32),
            "flag": [True, False, True],
            "text": ["a", None, "c"],
            "count": pd.array([1, None, 3], dtype="Int64"),
            "level": pd.Categorical(
                ["lo", "hi", "lo"], categories=["lo", "hi", "max"], ordered=True
            ),
            "when": pd.date_range("2024-03-30", periods=3, freq="h", tz="Europe/Paris"),
        },
        index=pd.Index(["x", "y", "z"], name="row"),
    ),
    "python objects": lambda: pd.DataFrame(
        {
            7: [dt.date(2024, 1, 2), None, dt.date(2024, 1, 4)],
            ("price", "eur"): [Decimal("1.10"), Decimal("2"), None],
            "mixed": [1, "one", 1.5],
            "lists": [[1, 2], [], ["a"]],
        }
    ),
    "time index": lambda: pd.Series(
        [1.0, 2.0, 3.0], index=pd.date_range("2024-01-01", periods=3, freq="D", name="day")
    ),
    "multi index": lambda: pd.DataFrame(
        {"v": [1, 2, 3, 4]},
        index=pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "j"]),
    ),
    "empty": lambda: pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    "index": lambda: pd.Index([3, 1, 2], name="k"),
    "object array": lambda: np.array([[1, "a"], [None, 2.5]], dtype=object),
    "numeric array": lambda: np.arange(6, dtype=np.int16).reshape(2, 3),
}


@pytest.mark.parametrize("kind", list(VALUES))
def test_a_cached_output_keeps_its_type_index_and_dtypes(
    registry: Registry, settings: Settings, kind: str
) -> None:
    fresh, cached = _outputs_twice(VALUES[kind], registry, settings)
    _same(cached, fresh)


def test_a_table_that_would_come_back_different_is_refused_and_nothing_is_stored(
    registry: Registry, settings: Settings
) -> None:
    class Point:
        pass

    @step
    def points() -> pd.DataFrame:
        return pd.DataFrame({"id": [1, 2], "where": [Point(), Point()]})

    with pytest.raises(mf.ModelfleetError) as caught:
        _run(Pipeline(name="points", steps=[points]), registry, settings)
    message = str(caught.value)
    assert "cannot store a step output of type DataFrame: column 'where'" in message
    assert "a value of type Point" in message
    assert caught.value.hint is not None and "convert such values" in caught.value.hint
    assert _stored_files(settings) == []


def _exec_step(body: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(f"def scale(x: int = 2):\n    return {body}\n", namespace)  # no source file to read
    return step(namespace["scale"])


def test_steps_without_source_are_cached_by_their_whole_code(
    registry: Registry, settings: Settings
) -> None:
    def run(body: str) -> tuple[list[str], Any]:
        report = _run(Pipeline(name="s", steps=[_exec_step(body)]), registry, settings)
        return _statuses(report), report

    assert run("x * 3")[0] == ["ran"]
    assert run("x * 10")[0] == ["ran"]  # was "cached": the 6 of `x * 3` was reused
    assert run("x * 3")[0] == ["cached"]  # the same code still hits its entry
    assert run("x in {'a', 'b'}")[0] == ["ran"]
    assert run("x in {'a', 'c'}")[0] == ["ran"]
    assert run("(lambda y: y + 1)(x)")[0] == ["ran"]
    assert run("(lambda y: y + 2)(x)")[0] == ["ran"]


def test_a_builtin_step_is_cached_by_its_name(registry: Registry, settings: Settings) -> None:
    assert step(len).code_hash == step(len).code_hash != step(abs).code_hash
    rounded = Pipeline(name="r", steps=[step(round)])
    params = {"number": 2.567, "ndigits": 1}
    first = run_pipeline(rounded, params, settings=settings, registry=registry, say=lambda _: None)
    again = run_pipeline(rounded, params, settings=settings, registry=registry, say=lambda _: None)
    assert (_statuses(first), _statuses(again)) == (["ran"], ["cached"])


@pytest.mark.parametrize(
    ("fn", "reason"),
    [
        ([3, 1].index, "is a method bound to a list object"),
        (
            type("Scorer", (), {"__call__": lambda self, x: x})(),
            "is a Scorer object, not a function",
        ),
    ],
)
def test_a_callable_whose_state_the_cache_cannot_see_is_refused_when_declared(
    fn: Any, reason: str
) -> None:
    with pytest.raises(mf.ModelfleetError, match=reason) as caught:
        step(name="odd")(fn)
    assert caught.value.hint is not None and "def" in caught.value.hint


@step
def noisy(n: int = 4) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]  # differs on every run


@pytest.mark.parametrize("entry", ["output", "manifest"])
@pytest.mark.parametrize("make", ["same bytes", "new bytes"])
def test_a_run_without_the_cache_repairs_a_damaged_entry(
    registry: Registry, settings: Settings, entry: str, make: str
) -> None:
    @step
    def fixed(n: int = 4) -> list[int]:
        return list(range(n))

    pipeline = Pipeline(name="repair", steps=[fixed if make == "same bytes" else noisy])
    _run(pipeline, registry, settings)
    files = _stored_files(settings)
    manifest = next(p for p in files if p.read_bytes().startswith(b'{"'))
    damaged = manifest if entry == "manifest" else next(p for p in files if p != manifest)
    damaged.write_bytes(b"[9, 9, 9, 9]")
    with pytest.raises(ArtifactCorruptedError):
        _run(pipeline, registry, settings)
    assert _statuses(_run(pipeline, registry, settings, use_cache=False)) == ["ran"]
    assert _statuses(_run(pipeline, registry, settings)) == ["cached"]


def test_two_lambdas_on_one_line_do_not_share_a_cache_entry(
    registry: Registry, settings: Settings
) -> None:
    double, triple = step(name="times")(lambda n=1: n * 2), step(name="times")(lambda n=1: n * 3)
    seen: list[int] = []

    @step(cache=False)
    def look(times: int) -> int:
        seen.append(times)
        return 0

    _run(Pipeline(name="l", steps=[double, look]), registry, settings)
    report = _run(Pipeline(name="l", steps=[triple, look]), registry, settings)
    assert (_statuses(report), seen) == (["ran", "ran"], [2, 3])
