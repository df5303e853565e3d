"""Quantization: fp16 and int8 children with lineage, figures, and the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelfleet as mf
from modelfleet.datasets import LabeledData, read_data
from modelfleet.registry import Registry
from tests.models import iris


@pytest.fixture
def mlp(registry: Registry) -> mf.ModelVersion:
    X, y = iris()
    model = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=500, random_state=0)
    ).fit(X, y)
    return mf.register(
        model,
        name="mlp",
        sample_input=X,
        metrics={"accuracy": model.score(X, y)},
        registry=registry,
    )


@pytest.mark.parametrize(
    ("variant", "method"), [("int8", "dynamic"), ("int8", "static"), ("fp16", "dynamic")]
)
def test_quantized_child_records_parent_and_figures(
    variant: str, method: str, mlp: mf.ModelVersion, registry: Registry
) -> None:
    X, y = iris()
    child = mf.quantize(
        "mlp:1",
        to=variant,
        method=method,
        eval_data=LabeledData(X, y),
        max_drop=0.05,
        registry=registry,
    )
    assert child.version == 2
    assert child.variant.value == variant
    assert child.lineage.parent_version == 1
    figures = child.verification or {}
    assert figures["metric"] == "accuracy"
    assert figures["metric_before"] - figures["metric_after"] <= 0.05
    assert figures["size_bytes_after"] < figures["size_bytes_before"]
    assert set(figures["latency_before"]) == {"batch_1_ms", "batch_64_ms"}
    assert child.metrics["accuracy"] == figures["metric_after"]
    graph = registry.read_artifact(child, "onnx")
    assert len(graph) == figures["size_bytes_after"]
    assert child.signature.inputs == mlp.signature.inputs  # clients need not change


def test_without_eval_data_the_stored_sample_measures_agreement(
    mlp: mf.ModelVersion, registry: Registry
) -> None:
    child = mf.quantize("mlp:1", to="int8", registry=registry)
    figures = child.verification or {}
    assert figures["metric"] == "agreement"
    assert figures["labels"] is False
    assert figures["eval_rows"] == 150


def _fragile_classifier() -> Any:
    """A MatMul classifier whose decision rests on a weight int8 rounds to zero."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.array([[100.0, 100.0], [0.01, -0.01]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["logits"])],
        "fragile",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[onnx.numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_accuracy_drop_beyond_tolerance_creates_nothing(registry: Registry) -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0, 1, 400), rng.normal(0, 1, 400)]).astype(np.float32)
    y = (X[:, 1] < 0).astype(np.int64)  # class 1 when the small-weight feature is negative
    mf.register(_fragile_classifier(), name="fragile", task="classification", registry=registry)
    with pytest.raises(mf.AccuracyDropError, match=r"dropped accuracy from 1\.0000") as info:
        mf.quantize(
            "fragile:1", to="int8", eval_data=LabeledData(X, y), max_drop=0.01, registry=registry
        )
    assert info.value.figures["metric_after"] < 0.9
    assert [v.version for v in registry.versions("fragile")] == [1]


def test_tree_ensembles_are_reported_as_not_benefiting(registry: Registry) -> None:
    X, y = iris()
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    mf.register(forest, name="forest", sample_input=X, registry=registry)
    with pytest.raises(mf.QuantizeError, match="tree ensembles have none"):
        mf.quantize("forest:1", to="int8", registry=registry)
    with pytest.raises(mf.QuantizeError, match="tree ensembles stay fp32"):
        mf.quantize("forest:1", to="fp16", registry=registry)
    assert len(registry.versions("forest")) == 1


def test_quantized_versions_are_not_quantized_again(
    mlp: mf.ModelVersion, registry: Registry
) -> None:
    mf.quantize("mlp:1", to="int8", registry=registry)
    with pytest.raises(mf.QuantizeError, match=r"already int8.*mlp:1"):
        mf.quantize("mlp:2", to="fp16", registry=registry)


def test_unknown_variant_and_method_are_refused(mlp: mf.ModelVersion, registry: Registry) -> None:
    with pytest.raises(mf.QuantizeError, match="int4"):
        mf.quantize("mlp:1", to="int4", registry=registry)
    with pytest.raises(mf.QuantizeError, match="magic"):
        mf.quantize("mlp:1", to="int8", method="magic", registry=registry)


def test_eval_files_in_csv_and_npz(tmp_path: Path, mlp: mf.ModelVersion) -> None:
    X, y = iris()
    csv = tmp_path / "eval.csv"
    lines = [
        "a,b,c,d,label",
        *(",".join([*map(str, row), str(t)]) for row, t in zip(X, y, strict=True)),
    ]
    csv.write_text("\n".join(lines))
    data = read_data(csv)
    assert data.labels is not None
    assert data.features.shape == (150, 4)
    npz = tmp_path / "eval.npz"
    np.savez(npz, X=X, y=y)
    data = read_data(npz)
    assert np.array_equal(data.labels, y)
    with pytest.raises(mf.ModelfleetError, match="does not exist"):
        read_data(tmp_path / "missing.csv")
    with pytest.raises(mf.SignatureError, match="no column 'target'"):
        read_data(csv, label="target")
