"""Bad pipeline settings and one-class batches are refused before anything is trained or kept."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.pipeline import Column, DataSchema, DataValidationError, load_pipeline, validate
from modelfleet.registry import Registry
from tests.pipeline.test_registration import _pipeline


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gate": ["accuracy >= high"]}, "invalid requirement 'accuracy >= high'"),
        ({"promote_to": "production"}, "promote_to='production' is not a stage"),
    ],
)
def test_a_bad_gate_or_stage_is_refused_before_training(
    registry: Registry, settings: Settings, options: dict[str, object], message: str
) -> None:
    with pytest.raises(mf.ModelfleetError, match=message) as caught:
        _pipeline(**options)
    assert caught.value.hint
    assert registry.models() == []


def test_a_pipeline_file_with_a_bad_stage_does_not_load(tmp_path: Path) -> None:
    source = tmp_path / "bad_stage.py"
    source.write_text(
        "from modelfleet.pipeline import Pipeline, step\n"
        "@step\n"
        "def one() -> int:\n"
        "    return 1\n"
        "pipeline = Pipeline(name='bad', steps=[one], promote_to='live')\n"
    )
    with pytest.raises(mf.ConfigError, match="use one of dev, qa, uat, prod"):
        load_pipeline(str(source))


def _balance(categories: tuple[int, ...] | None = None) -> DataSchema:
    return DataSchema(
        columns={"x": Column("float"), "label": Column("int", categories=categories)},
        label="label",
        min_class_share=0.1,
    )


def test_a_batch_of_one_class_fails_the_class_balance() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [0, 0, 0]})
    with pytest.raises(DataValidationError, match="failures in columns"):
        validate(frame, _balance())


def test_a_declared_class_missing_from_the_batch_fails_the_class_balance() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, 0, 1]})
    validate(frame, _balance())
    with pytest.raises(DataValidationError):
        validate(frame, _balance(categories=(0, 1, 2)))


def test_a_balanced_batch_passes() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": [0, 1, 2, 1]})
    assert len(validate(frame, _balance(categories=(0, 1, 2)))) == 4
