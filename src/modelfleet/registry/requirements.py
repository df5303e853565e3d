"""Promotion requirements such as ``accuracy>=0.9``: parsed once, checked against metrics."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelfleet.errors import ModelfleetError

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_PATTERN = re.compile(
    r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True, slots=True)
class Requirement:
    """``metric op threshold``."""

    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"

    def failure(self, metrics: Mapping[str, float]) -> str | None:
        """Why ``metrics`` fail this requirement, or None when they pass."""
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            return f"metric {self.metric!r} was not recorded (recorded: {known})"
        value = float(metrics[self.metric])
        if _OPERATORS[self.op](value, self.threshold):
            return None
        return f"{self.metric}={value:g} does not satisfy {self}"


def parse_requirements(texts: list[str]) -> list[Requirement]:
    """Parse ``["accuracy>=0.9", "f1>0.8"]`` (commas inside one text also separate)."""
    parsed = []
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = _PATTERN.match(part)
            if not match:
                raise ModelfleetError(
                    f"invalid requirement {part!r}",
                    hint="write METRIC OP NUMBER, e.g. accuracy>=0.9 (ops: >= > <= < ==)",
                )
            parsed.append(Requirement(match[1], match[2], float(match[3])))
    return parsed
