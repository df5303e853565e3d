"""Freeze: convert a source model to ONNX, check the graph, verify it numerically, time it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import SignatureError
from modelfleet.freeze.adapter import Adapter
from modelfleet.freeze.measure import measure_latency, offline_session, run_graph
from modelfleet.freeze.onnx_adapter import check_graph, graph_signature
from modelfleet.freeze.verify import check_figures, compare_outputs
from modelfleet.registry import Task
from modelfleet.signature import STRING, Signature, prepare_inputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrozenGraph:
    """The result of a freeze: graph bytes, full signature and what verification measured."""

    graph: bytes
    signature: Signature
    verification: dict[str, Any] = field(default_factory=dict)


def synthetic_inputs(signature: Signature, rows: int = 8) -> dict[str, np.ndarray[Any, Any]]:
    """Zero-valued inputs following ``signature`` (used to time graphs registered bare)."""
    arrays = {}
    for spec in signature.inputs:
        shape = tuple((rows if i == 0 else 1) if d is None else d for i, d in enumerate(spec.shape))
        if spec.dtype == STRING:
            arrays[spec.name] = np.full(shape, "", dtype=object)
        else:
            arrays[spec.name] = np.zeros(shape, dtype=spec.numpy_dtype)
    return arrays


def _same_layout(sample: Any, arrays: Mapping[str, np.ndarray[Any, Any]]) -> Any:
    """The prepared arrays in the sample's own form, so both models see identical values."""
    if type(sample).__name__ == "DataFrame":
        import pandas as pd

        return pd.DataFrame({name: a.reshape(-1) for name, a in arrays.items()})
    if isinstance(sample, Mapping):
        return dict(arrays)
    return next(iter(arrays.values()))


def freeze_model(
    model: Any,
    adapter: Adapter,
    *,
    sample: Any,
    task: Task,
    settings: FreezeSettings,
    latency_runs: int = 50,
) -> FrozenGraph:
    """Convert ``model`` (already normalized by its adapter) and verify it on ``sample``."""
    if adapter.framework == "onnx":
        return _freeze_graph(model, sample=sample, latency_runs=latency_runs)
    if sample is None:
        raise SignatureError(
            f"freezing a {adapter.framework} model needs a sample input",
            hint="pass sample_input=X (or --sample FILE) with a few representative rows",
        )
    input_signature = adapter.input_signature(sample)
    arrays = prepare_inputs(input_signature, sample)
    graph = adapter.to_onnx(model, input_signature, settings)
    check_graph(graph, origin=f"the graph exported from {type(model).__name__}")
    data = graph.SerializeToString()
    signature = graph_signature(graph)
    session = offline_session(data)
    frozen_out = run_graph(session, arrays)
    source_out = adapter.predict(model, _same_layout(sample, arrays))
    figures = compare_outputs(source_out, frozen_out, task)
    check_figures(figures, settings)
    logger.info("verified %s graph: %s", adapter.framework, figures)
    verification = {
        "method": "compare-with-source",
        **figures,
        "atol": settings.atol,
        "min_agreement": settings.min_agreement,
        "opset": _opset(graph),
        "size_bytes": len(data),
        "latency": measure_latency(session, arrays, runs=latency_runs),
    }
    return FrozenGraph(data, signature, verification)


def _freeze_graph(graph: Any, *, sample: Any, latency_runs: int) -> FrozenGraph:
    check_graph(graph)
    data = graph.SerializeToString()
    signature = graph_signature(graph)
    session = offline_session(data)
    arrays = (
        prepare_inputs(signature, sample) if sample is not None else synthetic_inputs(signature)
    )
    run_graph(session, arrays)
    verification = {
        "method": "onnx-checker",
        "opset": _opset(graph),
        "size_bytes": len(data),
        "latency": measure_latency(session, arrays, runs=latency_runs),
    }
    return FrozenGraph(data, signature, verification)


def _opset(graph: Any) -> int:
    return max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)
