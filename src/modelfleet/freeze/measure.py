"""Running a frozen graph offline: outputs for verification, latency for the version record."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelfleet.errors import FreezeError, MissingDependencyError

BATCH_SIZES = (1, 64)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx", purpose="run ONNX graphs") from exc
    return onnxruntime


def offline_session(graph: bytes, *, threads: int = 1) -> Any:
    """An ONNX Runtime session on the CPU with a fixed thread count (reproducible timings)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise FreezeError(
            f"ONNX Runtime cannot load the graph: {str(exc).splitlines()[0][:300]}",
            hint="check the opset and operators are supported by onnxruntime",
        ) from exc


def run_graph(
    session: Any, arrays: Mapping[str, np.ndarray[Any, Any]]
) -> list[np.ndarray[Any, Any]]:
    """Outputs of ``session`` on ``arrays``, in graph order."""
    try:
        return [np.asarray(o) for o in session.run(None, dict(arrays))]
    except Exception as exc:  # onnxruntime raises its own runtime error types
        raise FreezeError(
            f"running the ONNX graph failed: {str(exc).splitlines()[0][:300]}",
            hint="check the sample input matches the model signature",
        ) from exc


def rows(arrays: Mapping[str, np.ndarray[Any, Any]], n: int) -> dict[str, np.ndarray[Any, Any]]:
    """Exactly ``n`` rows of every input, repeating the sample when it is shorter."""
    out = {}
    for name, array in arrays.items():
        reps = -(-n // array.shape[0])
        out[name] = np.concatenate([array] * reps)[:n] if reps > 1 else array[:n]
    return out


def measure_latency(
    session: Any, arrays: Mapping[str, np.ndarray[Any, Any]], *, runs: int
) -> dict[str, float]:
    """Median milliseconds per call at batch 1 and 64 (after a warm-up call each)."""
    result = {}
    for batch in BATCH_SIZES:
        feed = rows(arrays, batch)
        session.run(None, feed)
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            timings.append(time.perf_counter() - start)
        result[f"batch_{batch}_ms"] = round(statistics.median(timings) * 1000, 4)
    return result
