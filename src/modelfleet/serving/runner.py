"""Runners execute a model on prepared arrays; ``OnnxRunner`` holds one ONNX Runtime session.

The session is created once, with its threads set explicitly (ONNX Runtime would otherwise
take every core and spin on them), and reused by every request. ``run`` is blocking and
releases the GIL; the batcher calls it from its own thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from modelfleet.errors import MissingDependencyError, ServingError
from modelfleet.signature import STRING, ArrayDict, Arrays, Signature, TensorSpec

logger = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": STRING,
}


class Runner(Protocol):
    """Runs a model: named arrays in, named arrays out."""

    signature: Signature

    def run(self, inputs: Arrays, outputs: Sequence[str] | None = None) -> ArrayDict:
        """Blocking inference on a (possibly batched) set of inputs."""
        ...

    def close(self) -> None:
        """Release the model's resources."""
        ...


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "serve", purpose="serve models") from exc
    return onnxruntime


def _spec(meta: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(meta.type)
    if dtype is None:
        raise ServingError(f"tensor {meta.name!r} has unsupported type {meta.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in meta.shape)
    return TensorSpec(name=meta.name, dtype=dtype, shape=shape)


class OnnxRunner:
    """A :class:`Runner` over one ONNX Runtime CPU session."""

    def __init__(self, graph: bytes, *, threads: int = 1) -> None:
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Spinning worker threads would burn the cores the HTTP loop needs between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ServingError(
                f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0][:300]}",
                hint="check the artifact with 'modelfleet show' and re-freeze it",
            ) from exc
        self.signature = Signature(
            inputs=tuple(_spec(m) for m in self._session.get_inputs()),
            outputs=tuple(_spec(m) for m in self._session.get_outputs()),
        )
        self._output_names = self.signature.output_names

    def run(self, inputs: Arrays, outputs: Sequence[str] | None = None) -> ArrayDict:
        """Run the session; every output is computed and the requested ones returned."""
        results = self._session.run(None, inputs)
        named = dict(zip(self._output_names, results, strict=True))
        if outputs is None:
            return named
        return {name: named[name] for name in outputs}

    def close(self) -> None:
        """Drop the session (its memory is freed when the last reference goes)."""
        self._session = None
