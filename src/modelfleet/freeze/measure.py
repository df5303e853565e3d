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
        if array.ndim == 0 or n <= array.shape[0]:
            out[name] = array if array.ndim == 0 else array[:n]
            continue
        if array.shape[0] == 0:
            raise FreezeError(
                f"cannot time the graph at batch {n}: input {name!r} has no rows",
                hint="give a sample (or evaluation data) with at least one row",
            )
        reps = -(-n // array.shape[0])
        out[name] = np.concatenate([array] * reps)[:n]
    return out


def timed_feeds(
    session: Any, arrays: Mapping[str, np.ndarray[Any, Any]]
) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
    """The inputs to time, by record key: batch 1 and 64, or what a fixed-shape graph takes.

    A graph whose inputs declare a fixed first dimension (``X: float32[1, 3]``) rejects every
    other row count, so timing it at 64 would fail the freeze of a perfectly valid graph: it
    is timed at that size only. When inputs fix different first dimensions there is no batch
    axis at all, and the arrays are timed as given (they have just run).
    """
    fixed = {
        shape[0]
        for shape in (i.shape for i in session.get_inputs())
        if shape and isinstance(shape[0], int)
    }
    if len(fixed) > 1:
        return {"fixed_shape_ms": dict(arrays)}
    sizes = tuple(fixed) or BATCH_SIZES
    return {f"batch_{n}_ms": rows(arrays, n) for n in sizes}


def measure_latency(
    session: Any, arrays: Mapping[str, np.ndarray[Any, Any]], *, runs: int
) -> dict[str, float]:
    """Median milliseconds per call (after a warm-up) for each input :func:`timed_feeds` picks.

    The keys record which sizes were timed: ``batch_1_ms`` and ``batch_64_ms`` for a graph with
    an open batch axis, ``batch_<n>_ms`` alone for one fixed to ``n`` rows.
    """
    result = {}
    for key, feed in timed_feeds(session, arrays).items():
        run_graph(session, feed)  # warm-up, and a clear error if the graph refuses the feed
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            timings.append(time.perf_counter() - start)
        result[key] = round(statistics.median(timings) * 1000, 4)
    return result
