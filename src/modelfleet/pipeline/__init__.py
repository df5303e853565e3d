"""Pipelines: steps chained by name, cached by code and inputs, validated, registered, gated."""

from __future__ import annotations

from modelfleet.pipeline.runner import (
    Pipeline,
    Registration,
    RunReport,
    load_pipeline,
    parse_params,
    run_pipeline,
)
from modelfleet.pipeline.steps import Step, step
from modelfleet.pipeline.validation import Column, DataSchema, DataValidationError, validate

__all__ = [
    "Column",
    "DataSchema",
    "DataValidationError",
    "Pipeline",
    "Registration",
    "RunReport",
    "Step",
    "load_pipeline",
    "parse_params",
    "run_pipeline",
    "step",
    "validate",
]
