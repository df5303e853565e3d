"""The quantization gate: a child version exists only when the metric holds within max_drop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto

import modelfleet as mf
from modelfleet.datasets import LabeledData
from modelfleet.freeze import Method, Quantized, graph_signature, onnx_module, quantize_graph
from modelfleet.registry import Registry, Variant
from tests.models import matmul_graph

# fp16 conversion clamps weights to +-10000 (onnxconverter-common's default), so a decision
# resting on the ratio of two larger weights (5e4 vs 2e4) changes in the fp16 graph.
_WIDE_WEIGHTS = [[5e4, 0.0], [0.0, 2e4]]


def _data(rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(0).uniform(0, 1, (rows, 2)).astype(np.float32)
    return X, (2e4 * X[:, 1] > 5e4 * X[:, 0]).astype(np.int64)  # the fp32 graph's argmax


def _quantize(graph: Any, variant: Variant, task: mf.Task, labels: Any) -> Quantized:
    X, _ = _data()
    return quantize_graph(
        graph.SerializeToString(),
        variant=variant,
        method=Method.DYNAMIC,
        task=task,
        features={"X": X},
        labels=labels,
        latency_runs=3,
    )


def test_fp16_child_keeps_fp32_inputs_and_reports_what_it_lost() -> None:
    _, y = _data()
    result = _quantize(matmul_graph(_WIDE_WEIGHTS), Variant.FP16, mf.Task.CLASSIFICATION, y)
    assert (result.metric, result.before) == ("accuracy", 1.0)
    assert result.after < 0.9
    assert result.figures["metric_before"] == result.before
    assert result.figures["metric_after"] == result.after
    assert result.figures["quantizer"] == "fp16-convert"
    assert result.figures["eval_rows"] == 300
    child = onnx_module().load_from_string(result.graph)
    weights = {init.name: init.data_type for init in child.graph.initializer}
    assert weights["W"] == TensorProto.FLOAT16
    assert graph_signature(child).describe() == "(X: float32[?, 2]) -> (Y: float32[?, 2])"


def test_without_labels_the_child_is_judged_against_the_fp32_outputs() -> None:
    wide = matmul_graph(_WIDE_WEIGHTS)
    agreement = _quantize(wide, Variant.FP16, mf.Task.CLASSIFICATION, None)
    assert (agreement.metric, agreement.before) == ("agreement", 1.0)
    assert agreement.after < 0.9
    assert agreement.figures["labels"] is False
    fidelity = _quantize(matmul_graph([[5e4], [2e4]]), Variant.FP16, mf.Task.REGRESSION, None)
    assert (fidelity.metric, fidelity.before) == ("fidelity", 1.0)
    assert fidelity.after < 0.5


def test_fp32_is_not_a_quantization_target() -> None:
    with pytest.raises(mf.QuantizeError, match="fp32 is the unquantized graph") as info:
        _quantize(matmul_graph(_WIDE_WEIGHTS), Variant.FP32, mf.Task.OTHER, None)
    assert info.value.hint == "choose --to fp16 or int8"


@pytest.mark.parametrize("with_labels", [True, False])
def test_fp16_drop_beyond_max_drop_creates_no_version(
    registry: Registry, with_labels: bool
) -> None:
    X, y = _data()
    mf.register(matmul_graph(_WIDE_WEIGHTS), name="wide", task="classification", registry=registry)
    eval_data = LabeledData(X, y if with_labels else None)
    with pytest.raises(mf.AccuracyDropError) as info:
        mf.quantize("wide:1", to="fp16", eval_data=eval_data, max_drop=0.05, registry=registry)
    error = info.value
    metric = "accuracy" if with_labels else "agreement"
    assert (error.metric, error.before, error.max_drop) == (metric, 1.0, 0.05)
    assert error.after < 0.9
    message = str(error)
    assert message.startswith(
        f"fp16 quantization dropped {metric} from 1.0000 to {error.after:.4f}"
    )
    assert f"(drop {1.0 - error.after:.4f} > allowed 0.0500); no version was created" in message
    assert "raise --max-drop" in message
    assert error.figures["metric_after"] == error.after
    assert [v.version for v in registry.versions("wide")] == [1]


def test_regression_fidelity_drop_is_refused(registry: Registry) -> None:
    X, _ = _data()
    mf.register(matmul_graph([[5e4], [2e4]]), name="reg", task="regression", registry=registry)
    with pytest.raises(mf.AccuracyDropError, match=r"dropped fidelity from 1\.0000"):
        mf.quantize("reg:1", to="fp16", eval_data=LabeledData(X, None), registry=registry)
    assert [v.version for v in registry.versions("reg")] == [1]


def test_drop_equal_to_max_drop_is_accepted(registry: Registry) -> None:
    # Three rows the fp16 graph still gets right and one it gets wrong: a drop of exactly 0.25.
    X = np.array([[0.9, 0.1], [0.8, 0.3], [0.7, 0.2], [0.5, 1.0]], dtype=np.float32)
    y = np.zeros(4, dtype=np.int64)
    mf.register(
        matmul_graph(_WIDE_WEIGHTS),
        name="edge",
        task="classification",
        metrics={"accuracy": 1.0},
        registry=registry,
    )
    child = mf.quantize(
        "edge:1", to="fp16", eval_data=LabeledData(X, y), max_drop=0.25, registry=registry
    )
    assert child.variant is Variant.FP16
    assert child.metrics["accuracy"] == 0.75
    assert (child.verification or {})["metric_before"] == 1.0
    with pytest.raises(mf.AccuracyDropError, match=r"drop 0\.2500 > allowed 0\.2400"):
        mf.quantize(
            "edge:1", to="fp16", eval_data=LabeledData(X, y), max_drop=0.24, registry=registry
        )
    assert [v.version for v in registry.versions("edge")] == [1, 2]
