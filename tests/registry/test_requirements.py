"""Promotion requirement parsing and checking."""

from __future__ import annotations

import pytest

from modelfleet import ModelfleetError
from modelfleet.registry import parse_requirements


def test_parse_and_check() -> None:
    reqs = parse_requirements(["accuracy>=0.9, latency_ms<5", "f1 > 0.8"])
    assert [str(r) for r in reqs] == ["accuracy>=0.9", "latency_ms<5", "f1>0.8"]
    metrics = {"accuracy": 0.91, "latency_ms": 7.0, "f1": 0.8}
    failures = [r.failure(metrics) for r in reqs]
    assert failures[0] is None
    assert failures[1] == "latency_ms=7 does not satisfy latency_ms<5"
    assert failures[2] == "f1=0.8 does not satisfy f1>0.8"


@pytest.mark.parametrize("text", ["accuracy", ">=0.9", "accuracy => 0.9", "accuracy>=high"])
def test_malformed_requirements_are_refused(text: str) -> None:
    with pytest.raises(ModelfleetError, match="invalid requirement"):
        parse_requirements([text])
