"""Model references: ``name`` (latest), ``name:3`` (a version) and ``name@prod`` (a stage)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from modelfleet.errors import InvalidReferenceError, UnknownStageError

# fullmatch, not match with "$": "$" also matches before a trailing newline, and "iris\n" broke
# image tags, Containerfiles and Kubernetes names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Stage(StrEnum):
    """Environment stages a version can be promoted through, in order."""

    DEV = "dev"
    QA = "qa"
    UAT = "uat"
    PROD = "prod"


STAGES = tuple(s.value for s in Stage)


def parse_stage(value: str) -> Stage:
    """Return the stage named ``value`` or raise a clear error listing the valid ones."""
    try:
        return Stage(value.lower())
    except ValueError:
        raise UnknownStageError(value, STAGES) from None


def validate_name(name: str) -> str:
    """Check a model name: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidReferenceError(
            name,
            "a model name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit",
        )
    return name


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference; at most one of ``version`` and ``stage`` is set."""

    name: str
    version: int | None = None
    stage: Stage | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.stage is not None:
            return f"{self.name}@{self.stage.value}"
        return self.name

    @property
    def is_latest(self) -> bool:
        """True when the reference names no version or stage."""
        return self.version is None and self.stage is None


def parse_ref(text: str) -> ModelRef:
    """Parse ``name``, ``name:VERSION`` or ``name@STAGE``."""
    text = text.strip()
    if ":" in text and "@" in text:
        raise InvalidReferenceError(text, "give either ':version' or '@stage', not both")
    if ":" in text:
        name, _, version = text.partition(":")
        if not version.isdigit() or int(version) < 1:
            raise InvalidReferenceError(text, "the version must be a positive integer")
        return ModelRef(validate_name(name), version=int(version))
    if "@" in text:
        name, _, stage = text.partition("@")
        try:
            return ModelRef(validate_name(name), stage=parse_stage(stage))
        except UnknownStageError:
            raise InvalidReferenceError(
                text, f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}"
            ) from None
    return ModelRef(validate_name(text))
