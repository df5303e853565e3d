"""Small models generated on the fly (nothing binary is committed)."""

from __future__ import annotations

from typing import Any

import numpy as np


def sum_graph(features: int = 3) -> Any:
    """An ONNX graph that sums each row: X float32[N, features] -> Y float32[N, 1]."""
    import onnx
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    node = helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=1)
    graph = helper.make_graph(
        [node],
        "sum_rows",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Iris features as float32 (what ONNX tree thresholds need) and labels."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def logistic_pipeline() -> tuple[Any, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A fitted scaler + logistic regression on iris, with its data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return model, X, y


ALL_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "string",
)


def echo_graph() -> Any:
    """One input per datatype, each returned unchanged: x_<dtype>[N, 2] -> y_<dtype>[N, 2]."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inputs, outputs = [], [], []
    for name in ALL_DTYPES:
        elem = (
            TensorProto.STRING
            if name == "string"
            else helper.np_dtype_to_tensor_dtype(np.dtype(name))
        )
        inputs.append(helper.make_tensor_value_info(f"x_{name}", elem, ["batch", 2]))
        outputs.append(helper.make_tensor_value_info(f"y_{name}", elem, ["batch", 2]))
        nodes.append(helper.make_node("Identity", [f"x_{name}"], [f"y_{name}"]))
    graph = helper.make_graph(nodes, "echo", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def heavy_graph(width: int = 1024, layers: int = 6) -> Any:
    """A float32[N, width] -> float32[N, 1] stack of MatMul+Tanh with a real per-row cost."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    current = "X"
    for i in range(layers):
        weight = (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"h{i}"]))
        nodes.append(helper.make_node("Tanh", [f"h{i}"], [f"a{i}"]))
        current = f"a{i}"
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    inits.append(axes)
    nodes.append(helper.make_node("ReduceSum", [current, "axes"], ["Y"], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "heavy",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def matmul_graph(weights: list[list[float]]) -> Any:
    """X float32[batch, 2] @ W -> Y float32[batch, len(W[0])]: weights chosen by the test."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.asarray(weights, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


_TRAINING_PIPELINE = """import numpy as np
from modelfleet.pipeline import Pipeline, Registration, step


@step(outputs=("X", "y"))
def data() -> tuple:
    X = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


@step
def model(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, y)


@step
def scores(model, X, y) -> dict:
    return {"accuracy": float(model.score(X, y))}


pipeline = Pipeline(
    name="{name}",
    steps=[data, model, scores],
    register=Registration(name="{name}", model="model", metrics="scores", sample="X"),
)
"""


def training_pipeline_source(name: str) -> bytes:
    """A tiny self-contained training pipeline file (numpy + scikit-learn), registering ``name``."""
    return _TRAINING_PIPELINE.replace("{name}", name).encode()
