"""Data validation: each kind of check fails with a report that points at the bad value."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import modelfleet as mf
from modelfleet.pipeline import Column, DataSchema, DataValidationError, validate

SCHEMA = DataSchema(
    columns={
        "age": Column("int", min=0, max=120),
        "plan": Column("category", categories=("basic", "pro")),
        "spend": Column("float", max_null_share=0.25),
        "label": Column("int"),
    },
    min_rows=3,
    mean_ranges={"age": (20.0, 60.0)},
    label="label",
    min_class_share=0.25,
)
HINT = "fix the data or the schema; the run report lists each failing value"


def _good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 41, 25, 52],
            "plan": ["basic", "pro", "basic", "pro"],
            "spend": [10.5, None, 3.0, 8.25],
            "label": [0, 1, 0, 1],
        }
    )


def _failures(frame: pd.DataFrame) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        validate(frame, SCHEMA)
    return caught.value


def _rows(error: DataValidationError) -> list[tuple[Any, ...]]:
    return [(f["column"], f["check"], f["row"], f["value"]) for f in error.report]


def test_a_good_frame_comes_back_coerced_to_the_declared_types() -> None:
    frame = _good().astype({"age": "float64", "label": "float64"})
    checked = validate(frame, SCHEMA)
    assert checked["age"].dtype == "int64"
    assert checked["label"].dtype == "int64"
    assert checked["age"].tolist() == [30, 41, 25, 52]
    assert checked["spend"].isna().sum() == 1  # within the allowed null share


def test_out_of_range_values_are_reported_by_row_and_value() -> None:
    error = _failures(_good().assign(age=[30, 130, 25, -2]))
    assert ("age", "greater_than_or_equal_to(0)", 3, -2) in _rows(error)
    assert ("age", "less_than_or_equal_to(120)", 1, 130) in _rows(error)
    assert isinstance(error, mf.ModelfleetError)
    assert error.hint == HINT


def test_an_unknown_category_is_reported_with_the_allowed_set() -> None:
    error = _failures(_good().assign(plan=["basic", "gold", "pro", "pro"]))
    assert _rows(error) == [("plan", "isin(['basic', 'pro'])", 1, "gold")]
    assert str(error).startswith("data validation failed: 1 failures in columns plan; ")


def test_too_many_nulls_break_the_null_share_but_a_few_are_allowed() -> None:
    error = _failures(_good().assign(spend=[None, None, 3.0, 8.25]))
    assert [(f["column"], f["check"]) for f in error.report] == [("spend", "null_share<=0.25")]


def test_nulls_in_a_non_nullable_column_are_refused() -> None:
    error = _failures(_good().assign(age=[30, None, 25, 52]))
    assert ("age", "not_nullable", 1, None) in _rows(error)


def test_a_value_that_cannot_take_the_declared_type_is_reported() -> None:
    error = _failures(_good().assign(age=["30", "forty", "25", "52"]))
    assert ("age", "coerce_dtype('int64')", 1, "forty") in _rows(error)


@pytest.mark.parametrize(
    ("change", "check", "value"),
    [
        (lambda f: f.assign(extra=1), "column_in_schema", "extra"),
        (lambda f: f.drop(columns="plan"), "column_in_dataframe", "plan"),
    ],
)
def test_columns_must_match_the_schema_exactly(change: Any, check: str, value: str) -> None:
    error = _failures(change(_good()))
    assert [(f["check"], f["value"]) for f in error.report] == [(check, value)]


@pytest.mark.parametrize(
    ("frame", "check"),
    [
        (_good().assign(age=[70, 80, 90, 100]), "mean(age) in [20.0, 60.0]"),
        (_good().assign(spend=[1.0, 2.0, 3.0, 4.0]).iloc[:2], "rows>=3"),
    ],
)
def test_dataset_level_statistics_are_checked(frame: pd.DataFrame, check: str) -> None:
    error = _failures(frame)
    assert check in [f["check"] for f in error.report]
    assert all(f["column"] == "*" and f["row"] is None for f in error.report)
    assert str(error).startswith(
        f"data validation failed: {len(error.report)} failures in columns *"
    )


def test_a_minority_class_at_exactly_the_allowed_share_passes() -> None:
    assert validate(_good().assign(label=[0, 0, 0, 1]), SCHEMA)["label"].sum() == 1


def test_a_skewed_label_breaks_the_class_balance() -> None:
    frame = pd.concat([_good()] * 3, ignore_index=True).assign(label=[0] * 11 + [1])
    error = _failures(frame)
    assert [f["check"] for f in error.report] == ["class balance >= 0.25"]


def test_every_failure_of_a_batch_is_listed_at_once() -> None:
    frame = _good().assign(age=[-1, -1, 60, 90], plan=["basic", "x", "y", "pro"])
    error = _failures(frame)
    assert len(error.report) == 4
    assert str(error).startswith("data validation failed: 4 failures in columns age, plan; ")
    assert sorted(f["row"] for f in error.report if f["column"] == "age") == [0, 1]
    assert sorted(f["value"] for f in error.report if f["column"] == "plan") == ["x", "y"]


def test_validation_leaves_the_callers_frame_untouched() -> None:
    frame = _good().astype({"age": "float64"})
    before = frame.copy()
    validate(frame, SCHEMA)
    with pytest.raises(DataValidationError):
        validate(frame.assign(age=[-1.0, 2.0, 3.0, 4.0]), SCHEMA)
    pd.testing.assert_frame_equal(frame, before)
