"""What the registry hands out: immutable records of models, versions, artifacts and stages."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelfleet.signature import Signature


class Role(StrEnum):
    """What an artifact is to its version."""

    SOURCE = "source"  # the model as trained (skops, ExportedProgram, TorchScript, ONNX)
    ONNX = "onnx"  # the frozen graph that serving loads
    SAMPLE = "sample"  # the sample input (npz), reused for verification and calibration
    PROFILE = "profile"  # the training data's reference profile (JSON), for drift


class Task(StrEnum):
    """What the model predicts; decides which metric quantization compares."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    OTHER = "other"


class Variant(StrEnum):
    """Numeric precision of a version's ONNX graph."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactRecord(_Record):
    """A stored file: ``key`` locates it in the artifact store, ``uri`` is where it was written."""

    role: str
    key: str
    uri: str
    sha256: str
    size: int
    media_type: str


class Lineage(_Record):
    """Where a version came from."""

    data_sha256: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    parent_version: int | None = None
    source_uri: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class VersionDraft(_Record):
    """Everything a new version records, before the registry gives it a number."""

    name: str
    framework: str
    framework_version: str
    task: Task
    variant: Variant = Variant.FP32
    signature: Signature
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    environment: dict[str, str] = Field(default_factory=dict)
    verification: dict[str, Any] | None = None
    created_by: str


class ModelVersion(VersionDraft):
    """A registered version: the draft plus its number, time, artifacts and current stages."""

    version: int
    created_at: datetime
    artifacts: tuple[ArtifactRecord, ...] = ()
    stages: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """The exact reference of this version, ``name:version``."""
        return f"{self.name}:{self.version}"

    def artifact(self, role: str) -> ArtifactRecord | None:
        """The artifact with ``role``, or None."""
        return next((a for a in self.artifacts if a.role == role), None)


class ModelSummary(_Record):
    """One line of ``modelfleet models``."""

    name: str
    latest_version: int
    versions: int
    stages: dict[str, int]
    created_at: datetime


class StageEvent(_Record):
    """One entry of a model's promotion history."""

    name: str
    stage: str
    version: int
    previous_version: int | None
    from_stage: str | None
    actor: str
    reason: str
    created_at: datetime
