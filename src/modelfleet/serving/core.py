"""The inference core: what the server does, independent of HTTP (MLServer's data plane idea).

Routes decode a request, call one method here and encode what it returns; every failure is a
:class:`~modelfleet.errors.ModelfleetError` whose HTTP status is decided in ``http_errors.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelfleet import __version__
from modelfleet.errors import InvalidInputError, SignatureError, UnavailableError
from modelfleet.serving.metrics import ServingMetrics
from modelfleet.serving.model import ModelInstance
from modelfleet.serving.protocol import InferRequest, describe_tensors
from modelfleet.serving.repository import ModelRepository
from modelfleet.serving.settings import ServeConfig
from modelfleet.signature import ArrayDict, Arrays, count_rows, prepare_inputs

logger = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "model_repository", "schedule_policy", "statistics"]


@dataclass(frozen=True, slots=True)
class InferResult:
    """Outputs of one request and the instance that produced them."""

    instance: ModelInstance
    outputs: ArrayDict


class InferenceCore:
    """Health, metadata and inference over the model repository."""

    def __init__(
        self, config: ServeConfig, repository: ModelRepository, metrics: ServingMetrics
    ) -> None:
        self.config = config
        self.repository = repository
        self.metrics = metrics
        self.draining = False
        self.lame_duck_until = 0.0
        self.started = False
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- health and metadata --------------------------------------------------------------

    @property
    def live(self) -> bool:
        """The process is up (even while loading or draining)."""
        return True

    @property
    def ready(self) -> bool:
        """Every model is loaded and the server is not draining."""
        return self.started and not self.draining and self.repository.ready

    def server_metadata(self) -> dict[str, Any]:
        """``GET /v2``."""
        return {"name": "modelfleet", "version": __version__, "extensions": EXTENSIONS}

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether a model (version) can take requests now."""
        try:
            self.repository.instance(name, version)
        except UnavailableError:
            return False
        return not self.draining

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``GET /v2/models/{name}[/versions/{v}]``."""
        instance = self.repository.instance(name, version)
        source = instance.source
        return {
            "name": name,
            "versions": [instance.version],
            "platform": "onnxruntime_onnx",
            "inputs": describe_tensors(instance.signature.inputs),
            "outputs": describe_tensors(instance.signature.outputs),
            "parameters": {
                "variant": source.variant,
                "sha256": source.sha256,
                "stages": list(source.stages),
                "batching": instance.batchable,
                "cache": instance.cache is not None,
                "max_batch_rows": instance.config.batching.max_batch_rows,
            },
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """A Triton-style model config, for clients that ask for one."""
        instance = self.repository.instance(name, version)
        batch = instance.config.batching.max_batch_rows if instance.batchable else 0

        def dims(specs: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": t["name"],
                    "data_type": "TYPE_"
                    + ("STRING" if t["datatype"] == "BYTES" else t["datatype"]),
                    "dims": t["shape"][1:] if batch else t["shape"],
                }
                for t in describe_tensors(specs)
            ]

        return {
            "name": name,
            "platform": "onnxruntime_onnx",
            "max_batch_size": batch,
            "input": dims(instance.signature.inputs),
            "output": dims(instance.signature.outputs),
        }

    def repository_index(self) -> list[dict[str, Any]]:
        """Every served model with its state."""
        return [h.status() for h in self.repository.handles.values()]

    # -- inference ------------------------------------------------------------------------

    def _enter(self) -> None:
        if self.draining and time.monotonic() >= self.lame_duck_until:
            raise UnavailableError(
                "the server is shutting down", hint="retry; another replica will answer"
            )
        self.inflight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferRequest,
        *,
        use_cache: bool = True,
        timeout_s: float | None = None,
        request_id: str = "",
    ) -> InferResult:
        """Validate a V2 request against the model signature and run it.

        The answered request is recorded under ``request_id`` for feedback and drift.
        """
        self._enter()
        try:
            instance = self.repository.instance(name, version)
            inputs = self._validate(instance, request.inputs)
            rows = count_rows(inputs)
            self._check_rows(rows)
            wanted = self._wanted_outputs(instance, request)
            params = request.parameters
            priority = 0
            if params:
                priority = _int_param(params, "priority")
                timeout_s = _timeout(params, timeout_s)
                use_cache = use_cache and params.get("cache", True) is not False
            outputs = await instance.infer(
                inputs,
                rows,
                outputs=wanted,
                priority=priority,
                timeout_s=timeout_s,
                use_cache=use_cache,
            )
            if instance.watch is not None:
                instance.watch.record(request_id, inputs, outputs)
            if wanted is not None:
                outputs = {n: outputs[n] for n in wanted}
            return InferResult(instance, outputs)
        finally:
            self._leave()

    async def predict(
        self, name: str, data: Any, *, use_cache: bool = True, request_id: str = ""
    ) -> InferResult:
        """KServe v1 ``:predict`` on already-decoded instances."""
        self._enter()
        try:
            instance = self.repository.instance(name)
            inputs = self._validate(instance, data)
            rows = count_rows(inputs)
            self._check_rows(rows)
            outputs = await instance.infer(inputs, rows, use_cache=use_cache)
            if instance.watch is not None:
                instance.watch.record(request_id, inputs, outputs)
            return InferResult(instance, outputs)
        finally:
            self._leave()

    def _validate(self, instance: ModelInstance, data: Any) -> ArrayDict:
        if isinstance(data, dict):
            exact = instance.validate(data)
            if exact is not None and _same_rows(exact):
                return exact
        try:
            return prepare_inputs(instance.signature, data)
        except SignatureError as exc:
            raise InvalidInputError(str(exc)) from None

    def _check_rows(self, rows: int) -> None:
        limit = self.config.server.max_rows_per_request
        if rows > limit:
            raise InvalidInputError(
                f"request has {rows} rows, more than the limit of {limit} rows per request",
                hint="split it into smaller requests",
            )

    @staticmethod
    def _wanted_outputs(instance: ModelInstance, request: InferRequest) -> list[str] | None:
        if request.outputs is None:
            return None
        names = [name for name, _ in request.outputs]
        known = instance.signature.output_names
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInputError(
                f"unknown outputs {unknown}", hint=f"the model outputs {', '.join(known)}"
            )
        return names

    # -- shutdown -------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Readiness turns false; after the lame-duck period new requests are refused."""
        if not self.draining:
            logger.info("draining: %d requests in flight", self.inflight)
            self.lame_duck_until = time.monotonic() + self.config.server.lame_duck_s
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait for in-flight requests to finish; True if they all did in time."""
        if self.inflight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


def _same_rows(arrays: Arrays) -> bool:
    rows = {a.shape[0] for a in arrays.values()}
    return len(rows) == 1


def _int_param(params: Mapping[str, Any], name: str) -> int:
    value = params.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(f"parameter {name!r} must be a non-negative integer")
    return value


def _timeout(params: Mapping[str, Any], header_s: float | None) -> float | None:
    # The V2 'timeout' parameter is in microseconds, as Triton's clients send it.
    value = params.get("timeout")
    if value is None:
        return header_s
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise InvalidInputError("parameter 'timeout' must be a positive number of microseconds")
    return float(value) / 1e6
