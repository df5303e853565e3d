"""ONNX files as given: the signature read from the graph's axes, and what freezing checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelfleet as mf
from modelfleet.config import FreezeSettings
from modelfleet.freeze import (
    ONNX_MEDIA_TYPE,
    FrozenGraph,
    find_adapter,
    freeze_model,
    graph_signature,
    load_model_file,
)

_ANY_DIM = object()  # a dimension with neither a size nor a name


def _graph(
    inputs: list[tuple[str, int, list[Any]]],
    nodes: list[Any],
    outputs: list[tuple[str, int, list[Any]]],
    initializers: list[Any] | None = None,
    opsets: list[Any] | None = None,
) -> Any:
    def info(name: str, elem: int, dims: list[Any]) -> Any:
        return helper.make_tensor_value_info(
            name, elem, [None if d is _ANY_DIM else d for d in dims]
        )

    graph = helper.make_graph(
        nodes,
        "g",
        [info(*spec) for spec in inputs],
        [info(*spec) for spec in outputs],
        initializer=initializers or [],
    )
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _scaler(batch: Any) -> Any:
    """Y = X @ W for X float32[batch, 3] and a [3, 2] weight."""
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    return _graph(
        [("X", TensorProto.FLOAT, [batch, 3])],
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        [("Y", TensorProto.FLOAT, [batch, 2])],
        initializers=[weight],
    )


def _freeze(graph: Any, sample: Any = None) -> FrozenGraph:
    return freeze_model(
        graph,
        find_adapter(graph),
        sample=sample,
        task=mf.Task.OTHER,
        settings=FreezeSettings(),
        latency_runs=3,
    )


@pytest.mark.parametrize(
    ("batch", "shown"), [("batch", "?"), ("N", "?"), (_ANY_DIM, "?"), (1, "1"), (16, "16")]
)
def test_batch_axis_in_the_signature(tmp_path: Path, batch: Any, shown: str) -> None:
    path = tmp_path / "scaler.onnx"
    path.write_bytes(_scaler(batch).SerializeToString())
    loaded = load_model_file(path)
    signature = graph_signature(loaded.model)
    assert signature.describe() == f"(X: float32[{shown}, 3]) -> (Y: float32[{shown}, 2])"


def test_loaded_file_keeps_its_exact_bytes_as_source(tmp_path: Path) -> None:
    data = _scaler("batch").SerializeToString()
    path = tmp_path / "Scaler.ONNX"  # the extension is matched without regard to case
    path.write_bytes(data)
    loaded = load_model_file(path)
    assert loaded.adapter.framework == "onnx"
    assert loaded.source is not None
    assert loaded.source.data == data
    assert loaded.source.media_type == ONNX_MEDIA_TYPE


def test_signature_covers_every_dtype_and_symbolic_inner_axes() -> None:
    graph = _graph(
        [
            ("ids", TensorProto.INT64, ["batch", "tokens"]),
            ("text", TensorProto.STRING, ["batch", 1]),
            ("x", TensorProto.DOUBLE, [2, "k"]),
        ],
        [
            helper.make_node("Identity", ["ids"], ["ids_out"]),
            helper.make_node("Identity", ["text"], ["text_out"]),
            helper.make_node("Cast", ["x"], ["half"], to=TensorProto.FLOAT16),
        ],
        [
            ("ids_out", TensorProto.INT64, ["batch", "tokens"]),
            ("text_out", TensorProto.STRING, ["batch", 1]),
            ("half", TensorProto.FLOAT16, [2, "k"]),
        ],
    )
    assert graph_signature(graph).describe() == (
        "(ids: int64[?, ?], text: string[?, 1], x: float64[2, ?]) -> "
        "(ids_out: int64[?, ?], text_out: string[?, 1], half: float16[2, ?])"
    )


def test_initializers_listed_as_inputs_are_not_inputs() -> None:
    # Older exporters list every weight among the graph inputs; clients must not send them.
    graph = _scaler("batch")
    graph.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2]))
    onnx.checker.check_model(graph, full_check=True)
    assert graph_signature(graph).input_names == ["X"]


def test_dynamic_graph_freezes_on_its_own_synthetic_rows() -> None:
    graph = _graph(
        [("ids", TensorProto.INT64, ["batch", 2]), ("text", TensorProto.STRING, ["batch", 1])],
        [
            helper.make_node("Identity", ["ids"], ["ids_out"]),
            helper.make_node("Identity", ["text"], ["text_out"]),
        ],
        [
            ("ids_out", TensorProto.INT64, ["batch", 2]),
            ("text_out", TensorProto.STRING, ["batch", 1]),
        ],
    )
    frozen = _freeze(graph)
    assert frozen.graph == graph.SerializeToString()
    assert frozen.signature == graph_signature(graph)
    record = frozen.verification
    assert record["method"] == "onnx-checker"
    assert record["opset"] == 17
    assert record["size_bytes"] == len(frozen.graph)
    assert set(record["latency"]) == {"batch_1_ms", "batch_64_ms"}


def test_sample_given_with_a_graph_is_checked_against_its_signature() -> None:
    graph = _scaler("batch")
    assert _freeze(graph, np.ones((5, 3))).verification["method"] == "onnx-checker"
    with pytest.raises(mf.SignatureError) as info:
        _freeze(graph, np.ones((5, 4), dtype=np.float32))
    assert "input 'X' has shape [5, 4], expected X: float32[?, 3]" in str(info.value)
    with pytest.raises(mf.SignatureError, match=r"missing inputs \['X'\]; unknown inputs \['Z'\]"):
        _freeze(graph, {"Z": np.ones((5, 3), dtype=np.float32)})


def test_graph_onnx_runtime_cannot_run_is_refused_at_freeze() -> None:
    # The checker accepts operators of a custom domain it does not know; ONNX Runtime does not.
    graph = _graph(
        [("X", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_node("Frobnicate", ["X"], ["Y"], domain="com.example")],
        [("Y", TensorProto.FLOAT, ["batch", 2])],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    with pytest.raises(mf.FreezeError) as info:
        _freeze(graph)
    message = str(info.value)
    assert message.startswith("ONNX Runtime cannot load the graph:")
    assert "Frobnicate" in message
    assert info.value.hint == "check the opset and operators are supported by onnxruntime"
