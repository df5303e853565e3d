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
