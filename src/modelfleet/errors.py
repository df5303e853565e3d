"""The exception hierarchy: every user-facing failure says what went wrong and what to do.

    ModelfleetError
    ├── ConfigError
    ├── MissingDependencyError
    ├── InvalidReferenceError
    │   └── UnknownStageError
    ├── SignatureError
    ├── RegistryError
    │   ├── ModelNotFoundError
    │   ├── ArtifactNotFoundError
    │   ├── ArtifactCorruptedError
    │   ├── UntrustedArtifactError
    │   ├── PromotionRefusedError
    │   └── SchemaVersionError
    ├── FreezeError
    │   ├── UnsupportedModelError
    │   └── VerificationError
    ├── QuantizeError
    │   └── AccuracyDropError
    ├── BuildError
    ├── DeployError
    ├── JobError
    └── ServingError
        ├── InvalidInputError          400
        ├── UnknownModelError          404
        ├── PayloadTooLargeError       413
        ├── UnauthorizedError          401
        ├── ForbiddenError             403
        ├── OverloadedError            503 + Retry-After
        ├── UnavailableError           503 (starting, draining)
        │   └── StateUnavailableError  503 + Retry-After (shared state backend down)
        └── DeadlineExceededError      504

Messages are built from structured fields, so callers (the CLI, the HTTP layer) can both
print them and act on the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ModelfleetError(Exception):
    """Root of every error modelfleet raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class ConfigError(ModelfleetError):
    """A setting or configuration file is invalid."""


class MissingDependencyError(ModelfleetError):
    """An optional dependency is needed for this operation but not installed."""

    def __init__(self, package: str, extra: str, *, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package} is not installed (needed to {purpose})",
            hint=f"run: pip install 'modelfleet[{extra}]'",
        )


class InvalidReferenceError(ModelfleetError):
    """A model reference could not be parsed."""

    def __init__(self, ref: str, reason: str) -> None:
        self.ref = ref
        super().__init__(
            f"invalid model reference {ref!r}: {reason}",
            hint="use 'name', 'name:3' or 'name@prod'",
        )


class UnknownStageError(InvalidReferenceError):
    """A stage (environment) name that is none of dev, qa, uat and prod."""

    def __init__(self, stage: str, stages: tuple[str, ...]) -> None:
        self.ref = self.stage = stage
        # An InvalidReferenceError, so callers that catch bad references still catch it, but
        # a stage given on its own (--env, --to) is not a model reference: say what it is.
        ModelfleetError.__init__(
            self, f"unknown stage {stage!r}", hint=f"use one of {', '.join(stages)}"
        )


class SignatureError(ModelfleetError):
    """Input data does not match, or cannot describe, a model signature."""


class RegistryError(ModelfleetError):
    """The registry could not complete an operation."""


class ModelNotFoundError(RegistryError):
    """A model name, version or stage does not exist."""

    def __init__(self, ref: str, *, known: str | None = None, hint: str | None = None) -> None:
        self.ref = ref
        detail = f" (known: {known})" if known else ""
        super().__init__(
            f"model {ref!r} not found{detail}", hint=hint or "run 'modelfleet models' to list them"
        )


class ArtifactNotFoundError(RegistryError):
    """An artifact recorded in the registry is missing from the artifact store."""

    def __init__(self, uri: str, *, role: str | None = None) -> None:
        self.uri = uri
        self.role = role
        what = f"{role} artifact" if role else "artifact"
        super().__init__(
            f"{what} {uri} is missing from the artifact store",
            hint="check MODELFLEET_ARTIFACTS points at the store the model was registered in",
        )


class ArtifactCorruptedError(RegistryError):
    """An artifact's bytes no longer match the sha256 recorded for it."""

    def __init__(self, uri: str, *, expected: str, actual: str) -> None:
        self.uri = uri
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"artifact corrupted: {uri} has sha256 {actual[:12]}…, expected {expected[:12]}…",
            hint="restore the file from a backup or register the model again",
        )


class UntrustedArtifactError(RegistryError):
    """Loading the file would execute arbitrary code (pickle) or unknown types."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(
            f"refusing to load {path}: {reason}",
            hint="pass --trust (trust=True) only if you trust whoever made this file",
        )


class PromotionRefusedError(RegistryError):
    """A stage promotion requirement was not met."""

    def __init__(self, ref: str, stage: str, failures: list[str]) -> None:
        self.ref = ref
        self.stage = stage
        self.failures = failures
        super().__init__(
            f"promotion of {ref} to {stage} refused: {'; '.join(failures)}",
            hint="improve the model or change --require",
        )


class SchemaVersionError(RegistryError):
    """The registry database was written by a newer modelfleet."""


class FreezeError(ModelfleetError):
    """Converting a model to ONNX failed."""


class UnsupportedModelError(FreezeError):
    """No adapter knows how to freeze this kind of model."""

    def __init__(self, model_type: str, *, hint: str | None = None) -> None:
        self.model_type = model_type
        super().__init__(
            f"cannot freeze a model of type {model_type}",
            hint=hint
            or (
                "supported: scikit-learn estimators and Pipelines, torch.nn.Module, "
                "onnx.ModelProto; export it to ONNX yourself and register the .onnx file"
            ),
        )


class VerificationError(FreezeError):
    """The ONNX graph does not reproduce the source model within tolerance."""

    def __init__(self, figures: Mapping[str, float], limits: Mapping[str, float]) -> None:
        self.figures = dict(figures)
        self.limits = dict(limits)
        shown = ", ".join(f"{k}={v:.3g}" for k, v in figures.items())
        allowed = ", ".join(f"{k}: {v:g}" for k, v in limits.items())
        super().__init__(
            f"ONNX graph differs from the source model: {shown} (allowed {allowed})",
            hint=(
                "ONNX tree ensembles compare in float32: train on float32 data "
                "(X.astype('float32')) so split thresholds survive, or loosen the tolerance "
                "with --atol/--min-agreement if the difference is expected"
            ),
        )


class QuantizeError(ModelfleetError):
    """Quantization could not produce a usable model."""


class AccuracyDropError(QuantizeError):
    """Quantization lost more of the metric than the tolerance allows."""

    def __init__(
        self,
        metric: str,
        before: float,
        after: float,
        max_drop: float,
        variant: str,
        *,
        figures: Mapping[str, Any] | None = None,
    ) -> None:
        self.metric = metric
        self.figures = dict(figures or {})
        self.before = before
        self.after = after
        self.max_drop = max_drop
        super().__init__(
            f"{variant} quantization dropped {metric} from {before:.4f} to {after:.4f} "
            f"(drop {before - after:.4f} > allowed {max_drop:.4f}); no version was created",
            hint="raise --max-drop, use --method static with calibration data, or keep fp32",
        )


class BuildError(ModelfleetError):
    """A container image or its build context could not be produced."""


class DeployError(ModelfleetError):
    """Kubernetes manifests could not be rendered, applied or rolled out."""


class JobError(ModelfleetError):
    """A job could not be submitted, found or changed."""


class ServingError(ModelfleetError):
    """A request to the model server cannot be answered; ``status`` is its HTTP status."""

    status = 500


class InvalidInputError(ServingError):
    """The request is malformed or does not match the model's signature."""

    status = 400


class UnknownModelError(ServingError):
    """The server does not serve this model or version."""

    status = 404

    def __init__(self, name: str, version: str | None = None, *, served: list[str]) -> None:
        self.name = name
        self.version = version
        what = f"{name} version {version}" if version else name
        super().__init__(
            f"model {what!r} is not served here",
            hint=f"served models: {', '.join(served) or 'none'} (GET /v2/repository/index)",
        )


class UnknownRequestIdError(ServingError):
    """Feedback names a request id with no recorded prediction."""

    status = 404


class NotAClassifierError(ServingError):
    """Feedback was sent to a model whose outputs hold no classes."""

    status = 409


class PayloadTooLargeError(ServingError):
    """The request body exceeds the configured limit."""

    status = 413

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"request body larger than {limit} bytes",
            hint="send fewer rows per request or raise server.max_body_bytes",
        )


class UnauthorizedError(ServingError):
    """No valid bearer token was presented."""

    status = 401


class ForbiddenError(ServingError):
    """The token is valid but lacks the scope this endpoint needs."""

    status = 403


class OverloadedError(ServingError):
    """The model's queue is full; the client should retry after ``retry_after`` seconds."""

    status = 503

    def __init__(self, model: str, queued: int, *, retry_after: float) -> None:
        self.model = model
        self.retry_after = retry_after
        super().__init__(
            f"model {model!r} is overloaded ({queued} requests queued)",
            hint=f"retry after {retry_after:g} s or add replicas",
        )


class UnavailableError(ServingError):
    """The server or model cannot take requests right now (loading, draining)."""

    status = 503


class StateUnavailableError(UnavailableError):
    """The shared serving state (predictions and feedback) cannot be reached right now.

    Inference goes on without it; feedback is refused until the backend is back, and the
    client should retry after ``retry_after`` seconds.
    """

    def __init__(self, message: str, *, retry_after: float = 5.0, hint: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(
            message,
            hint=hint
            or f"retry after {retry_after:g} s; check that the state backend "
            "(MODELFLEET_STATE_URL) is up",
        )


class DeadlineExceededError(ServingError):
    """The request's deadline passed before it could run; it was not executed."""

    status = 504

    def __init__(self, model: str, timeout_s: float) -> None:
        self.model = model
        super().__init__(
            f"request to {model!r} was not started within its {timeout_s * 1000:g} ms deadline "
            "and was dropped without running",
            hint="raise the timeout, lower the load, or send smaller requests",
        )
