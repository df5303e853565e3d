"""Server configuration: the models to serve and how (batching, queue, cache), plus limits and auth.

It comes from ``modelfleet serve`` flags and an optional YAML file (``--config``)::

    server: {port: 8080, max_body_bytes: 33554432, tokens: [{name: ci, sha256: …, scopes: [infer]}]}
    models:
      - ref: churn@prod
        variant: int8
        batching: {max_batch_rows: 64, max_wait_ms: 0}
        cache: {backend: "redis://127.0.0.1:6379/0", threshold: 0.9}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelfleet.errors import ConfigError

# infer: predictions and metadata; feedback: labels for answered requests (they move live
# accuracy and the cache gate, so a client that may only ask cannot also grade); admin:
# metrics, the summary and repository calls.
TokenScope = Literal["infer", "feedback", "admin"]
"""What a bearer token may do: call models (``infer``) or manage the server (``admin``)."""
OpenPath = Literal["health", "metrics", "docs"]
"""Endpoint groups that may be opened to callers without a token."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchingConfig(_Section):
    """Adaptive batching behind the queue.

    With ``max_wait_ms`` 0 (the default) a batch closes as soon as the runner is free: under
    load, requests pile up while the previous batch runs and are merged, so batches grow with
    concurrency and a lone request never waits for company.
    """

    enabled: bool = Field(True, description="merge concurrent requests into one ONNX call")
    max_batch_rows: int = Field(
        64, ge=1, le=1_000_000, description="rows per ONNX call; large requests are split"
    )
    max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="extra time a batch may wait to fill up"
    )
    inline_budget_ms: float = Field(
        0.5,
        ge=0,
        le=100,
        description="batches estimated to run faster than this run on the event loop; "
        "slower ones on the model's runner thread",
    )


class SchedulerConfig(_Section):
    """The per-model queue: cheapest work first, with aging so large requests finish."""

    max_queued_requests: int = Field(
        4096, ge=1, description="queued requests beyond which clients get 503"
    )
    aging: float = Field(
        64.0,
        gt=0,
        description="a request may be overtaken by work arriving up to aging x its own "
        "estimated run time after it",
    )
    priority_step_ms: float = Field(
        50.0, ge=0, description="queue time one priority level is worth"
    )
    default_timeout_ms: float | None = Field(
        None, gt=0, description="deadline of requests that do not set one"
    )
    retry_after_s: float = Field(1.0, gt=0, description="Retry-After sent with 503 overload")


class CacheConfig(_Section):
    """Output cache, enabled only for models accurate enough to repeat their answers."""

    enabled: bool | None = Field(
        None, description="force on/off; None: on when the model's metric >= threshold"
    )
    backend: str = Field("memory", description="'memory' or a redis:// URL shared by replicas")
    max_bytes: int = Field(64 << 20, ge=0, description="bytes of outputs the memory cache keeps")
    metric: str = Field("accuracy", description="recorded metric that gates the cache")
    threshold: float = Field(0.8, description="the metric must be at least this to cache")
    ttl_s: int = Field(3600, ge=1, description="expiry of Redis entries")


class WatchConfig(_Section):
    """What the server watches on one model: input drift and live accuracy."""

    enabled: bool = Field(True, description="record predictions, drift and feedback")
    profile: str | None = Field(
        None, description="training profile JSON for a file ref; registry refs use their own"
    )
    drift_window_rows: int = Field(
        2000, ge=10, le=1_000_000, description="recent input rows compared with the profile"
    )
    drift_min_rows: int = Field(200, ge=1, description="rows needed before drift is scored")
    drift_interval_s: float = Field(5.0, gt=0, description="how often drift is recomputed")
    drift_sample: float = Field(
        1.0, gt=0, le=1, description="share of requests whose rows enter the drift window"
    )
    accuracy_window: int = Field(
        500, ge=1, description="labelled requests the live accuracy is computed over"
    )
    min_labels: int = Field(
        20, ge=1, description="labelled requests needed before live accuracy gates the cache"
    )


class ModelConfig(_Section):
    """One served model."""

    ref: str = Field(description="name, name:3, name@prod, or a path to a .onnx file")
    name: str | None = Field(None, description="served name; default: the model's name")
    variant: Literal["fp32", "fp16", "int8"] | None = Field(
        None, description="serve this variant of the referenced version; None: as referenced"
    )
    sha256: str | None = Field(None, description="expected digest when ref is a file")
    version: str | None = Field(None, description="version reported for a file ref (images)")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="recorded metrics of a file ref (gate the cache)"
    )
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime intra-op threads")
    follow: bool = Field(True, description="hot swap when a name@stage ref moves")
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)


class TokenConfig(_Section):
    """A bearer token, stored as the sha256 of its value, with the scopes it grants."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[TokenScope, ...] = ("infer",)


class ServerConfig(_Section):
    """Process-wide settings."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="processes sharing the port")
    max_body_bytes: int = Field(32 << 20, ge=1024, description="larger bodies get 413")
    max_rows_per_request: int = Field(100_000, ge=1, description="larger requests get 400")
    max_header_bytes: int = Field(
        32 << 10,
        ge=1024,
        le=16 << 20,
        description="request line and headers together; a larger head gets 431 and the "
        "connection is closed",
    )
    max_url_bytes: int = Field(
        8 << 10,
        ge=256,
        # httptools parses URLs with 16-bit offsets: longer ones cannot be read at all.
        le=65_535,
        description="longer request targets (path and query) get 414",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request's head must arrive whole this long after its first byte (or "
        "after the connection opens); slower clients get 408 and are disconnected",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request body must keep coming: every window of this length must "
        "bring min_body_rate x window bytes, or the client gets 408 and is disconnected",
    )
    min_body_rate: int = Field(
        1024,
        ge=0,
        description="bytes per second a request body must average over each body_timeout_s "
        "window; 0: any progress will do",
    )
    tokens: tuple[TokenConfig, ...] = ()
    open_paths: tuple[OpenPath, ...] = ("health", "metrics", "docs")
    poll_interval_s: float = Field(10.0, gt=0, description="how often name@stage refs are checked")
    drain_timeout_s: float = Field(30.0, ge=0, description="how long SIGTERM waits for requests")
    lame_duck_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="after SIGTERM, keep answering for this long with 'Connection: close' "
        "(clients on kept-alive connections move to other replicas) before refusing with 503",
    )
    warmup: bool = Field(True, description="run one request through each model before ready")

    @model_validator(mode="after")
    def _url_fits_in_head(self) -> ServerConfig:
        if self.max_url_bytes > self.max_header_bytes:
            raise ValueError(
                f"max_url_bytes ({self.max_url_bytes}) must not exceed max_header_bytes "
                f"({self.max_header_bytes}): the URL is part of the request head"
            )
        return self


class MonitoringConfig(_Section):
    """Where the server keeps predictions, feedback and its sampled logs."""

    state_dir: str | None = Field(
        None,
        description="directory for the predictions database and logs; None: a fresh "
        "temporary directory per server (shared by its worker processes)",
    )
    retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="how long predictions wait for their feedback"
    )
    max_predictions: int = Field(
        1_000_000, ge=1, description="predictions kept at most (oldest dropped first)"
    )
    max_store_bytes: int = Field(
        32 << 20,
        ge=1 << 20,
        description="bytes the predictions store may hold, its SQLite WAL included (oldest "
        "predictions and feedback evicted first); sized for a pod's 64 MiB in-memory /tmp",
    )
    max_recorded_rows: int = Field(
        1024,
        ge=1,
        le=100_000,
        description="predicted classes (and logged rows) kept per request; feedback on a "
        "larger request is judged on its first rows",
    )
    feedback_retention_s: float = Field(
        30 * 24 * 3600.0, gt=0, description="how long feedback rows count for live accuracy"
    )
    flush_interval_s: float = Field(
        0.5, gt=0, le=60, description="how often recorded predictions are written"
    )
    log_sample: float = Field(
        0.01, ge=0, le=1, description="share of predictions written (with inputs) to the log"
    )
    log_max_bytes: int = Field(16 << 20, ge=1024, description="size at which logs rotate")
    log_backups: int = Field(3, ge=0, description="rotated log files kept")
    summary_window_s: float = Field(
        10.0, gt=0, description="window of the rates and percentiles in /monitor/summary"
    )


class StateConfig(_Section):
    """Where predictions, feedback and live accuracy live: per server, or shared by a fleet."""

    url: str | None = Field(
        None,
        description="sqlite:///PATH, postgresql://… or redis://… shared by every replica; "
        "None: MODELFLEET_STATE_URL, else a SQLite file in the state directory (per server)",
    )
    refresh_s: float = Field(
        1.0,
        gt=0,
        le=300,
        description="how often live accuracy (and so the cache gate) is re-read from the "
        "store: every replica follows a threshold crossing within this time",
    )
    timeout_s: float = Field(
        2.0, gt=0, le=60, description="a store call taking longer counts as the backend down"
    )
    retry_after_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="while the backend is down: predictions are dropped (counted) and "
        "feedback gets 503 with this Retry-After; the backend is tried again after it",
    )


class ServeConfig(_Section):
    """Everything ``modelfleet serve`` needs."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    models: tuple[ModelConfig, ...] = ()

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: tuple[ModelConfig, ...]) -> tuple[ModelConfig, ...]:
        names = [m.name for m in models if m.name]
        if len(names) != len(set(names)):
            raise ValueError(f"served names must be unique, got {names}")
        return models


def load_serve_config(path: Path | None) -> ServeConfig:
    """Read a YAML serve config (or the defaults), with errors naming the bad field."""
    if path is None:
        return ServeConfig()
    if not path.is_file():
        raise ConfigError(f"serve config {path} does not exist", hint="check --config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"serve config {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="save it as UTF-8, or check --config names the YAML file",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read serve config {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"serve config {path} is not valid YAML: {exc}") from exc
    try:
        return ServeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid serve config {path}: {problems}") from exc
