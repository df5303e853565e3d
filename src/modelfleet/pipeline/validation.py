"""Data validation with pandera: a declared schema, statistics checks, a readable failure report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelfleet.errors import MissingDependencyError, ModelfleetError


@dataclass(frozen=True)
class Column:
    """What one column must be."""

    dtype: str  # "int", "float", "str", "bool", "category"
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    nullable: bool = False
    max_null_share: float | None = None


@dataclass(frozen=True)
class DataSchema:
    """Columns plus dataset-level statistics: row count, mean ranges, class balance."""

    columns: dict[str, Column]
    min_rows: int = 1
    mean_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    label: str | None = None
    min_class_share: float | None = None


class DataValidationError(ModelfleetError):
    """A batch failed validation; ``report`` lists every failing row, column and check."""

    def __init__(self, report: list[dict[str, Any]]) -> None:
        self.report = report
        columns = sorted({str(r["column"]) for r in report})
        super().__init__(
            f"data validation failed: {len(report)} failures in columns {', '.join(columns)}",
            hint="fix the data or the schema; the run report lists each failing value",
        )


def _pandera() -> Any:
    try:
        import pandera.pandas as pa
    except ImportError as exc:
        raise MissingDependencyError("pandera", "train", purpose="validate data") from exc
    return pa


_DTYPES = {"int": "int64", "float": "float64", "str": "str", "bool": "bool", "category": "str"}


def to_pandera(schema: DataSchema) -> Any:
    """The pandera ``DataFrameSchema`` of a :class:`DataSchema`."""
    pa = _pandera()
    columns = {}
    for name, col in schema.columns.items():
        checks = []
        if col.min is not None:
            checks.append(pa.Check.ge(col.min))
        if col.max is not None:
            checks.append(pa.Check.le(col.max))
        if col.categories is not None:
            checks.append(pa.Check.isin(list(col.categories)))
        if col.max_null_share is not None:
            share = col.max_null_share
            checks.append(
                pa.Check(
                    lambda s, share=share: s.isna().mean() <= share,
                    element_wise=False,
                    name=f"null_share<={share}",
                    ignore_na=False,
                )
            )
        columns[name] = pa.Column(
            _DTYPES[col.dtype],
            checks=checks,
            nullable=col.nullable or col.max_null_share is not None,
            coerce=True,
        )
    frame_checks = [
        pa.Check(lambda df, n=schema.min_rows: len(df) >= n, name=f"rows>={schema.min_rows}")
    ]
    for name, (low, high) in schema.mean_ranges.items():
        frame_checks.append(
            pa.Check(
                lambda df, c=name, lo=low, hi=high: lo <= df[c].mean() <= hi,
                name=f"mean({name}) in [{low}, {high}]",
            )
        )
    if schema.label and schema.min_class_share is not None:
        share, label = schema.min_class_share, schema.label
        frame_checks.append(
            pa.Check(
                lambda df: _smallest_class_share(df[label], schema.columns.get(label)) >= share,
                name=f"class balance >= {share}",
            )
        )
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=True)


def _smallest_class_share(labels: Any, column: Column | None) -> float:
    """The share of the rarest class. Counting only the classes present would let a batch of
    one class pass, so a class the schema declares but the batch lacks counts as 0, and a
    batch with fewer than two classes has nothing to balance: 0."""
    shares = labels.value_counts(normalize=True)
    if column is not None and column.categories and set(column.categories) - set(shares.index):
        return 0.0
    return float(shares.min()) if len(shares) >= 2 else 0.0


def validate(frame: Any, schema: DataSchema) -> Any:
    """Return the validated (coerced) frame, or raise with every failure listed."""
    pa = _pandera()
    try:
        return to_pandera(schema).validate(frame, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        report = []
        if cases is not None:
            for row in cases.to_dict("records"):
                report.append(
                    {
                        "column": row.get("column") if row.get("column") is not None else "*",
                        "check": str(row.get("check")),
                        "row": None if row.get("index") is None else row.get("index"),
                        "value": _plain(row.get("failure_case")),
                    }
                )
        raise DataValidationError(
            report or [{"column": "*", "check": str(exc), "row": None, "value": None}]
        ) from None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)
