"""Adapter selection: each framework's objects find their adapter, anything else a clear error."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

import modelfleet as mf
from modelfleet.config import FreezeSettings
from modelfleet.freeze import SourceBlob, adapter_for_framework, find_adapter
from modelfleet.signature import Signature, TensorSpec
from tests.models import iris, logistic_pipeline, sum_graph


class _Sketch:
    """An object of no framework, the kind a user might pass by mistake."""


class _Outer:
    class Inner:
        pass


@pytest.mark.parametrize(
    ("make", "framework"),
    [
        (sum_graph, "onnx"),
        (lambda: logistic_pipeline()[0], "sklearn"),
        (LinearRegression, "sklearn"),  # unfitted estimators are still scikit-learn
        (StandardScaler, "sklearn"),
    ],
)
def test_framework_objects_find_their_adapter(make: Any, framework: str) -> None:
    adapter = find_adapter(make())
    assert adapter.framework == framework
    assert adapter_for_framework(framework).framework == framework


@pytest.mark.parametrize(
    ("model", "type_name"),
    [
        (_Sketch(), "tests.freeze.test_adapters._Sketch"),
        (_Outer.Inner(), "tests.freeze.test_adapters._Outer.Inner"),
        (np.zeros((2, 2)), "numpy.ndarray"),
        ("model.onnx", "builtins.str"),
    ],
)
def test_unsupported_object_names_its_type_and_the_way_out(model: object, type_name: str) -> None:
    with pytest.raises(mf.UnsupportedModelError) as info:
        find_adapter(model)
    error = info.value
    assert isinstance(error, mf.FreezeError)
    assert error.model_type == type_name
    message = str(error)
    assert f"cannot freeze a model of type {type_name}" in message
    assert "scikit-learn estimators and Pipelines, torch.nn.Module, onnx.ModelProto" in message
    assert "register the .onnx file" in message


def test_unknown_framework_name_is_refused_by_name() -> None:
    with pytest.raises(mf.UnsupportedModelError, match=r"of type tensorflow; supported:") as info:
        adapter_for_framework("tensorflow")
    assert info.value.model_type == "tensorflow"
    # Framework names are exact, as the registry records them.
    with pytest.raises(mf.UnsupportedModelError, match="SKLEARN"):
        adapter_for_framework("SKLEARN")


_DETECTION_PROBE = """
import sys
from modelfleet.freeze import find_adapter
from modelfleet.errors import UnsupportedModelError
try:
    find_adapter(3)
except UnsupportedModelError as exc:
    print("refused:", exc.model_type)
print("after refusal:", sorted(m for m in ("onnx", "sklearn", "torch") if m in sys.modules))
from sklearn.linear_model import LinearRegression
print("adapter:", find_adapter(LinearRegression()).framework)
print("after sklearn:", sorted(m for m in ("onnx", "sklearn", "torch") if m in sys.modules))
"""


def test_detection_never_imports_a_framework_just_to_say_no() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _DETECTION_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refused: builtins.int",
        "after refusal: []",
        "adapter: sklearn",
        "after sklearn: ['sklearn']",
    ]


def test_sklearn_source_is_stored_without_pickle_and_reloads_equal() -> None:
    model, X, _ = logistic_pipeline()
    adapter = find_adapter(model)
    blob = adapter.serialize(model, X[:5])
    assert blob.media_type == "application/vnd.skops"
    assert blob.data[:2] == b"PK"  # a zip of JSON and arrays, not a pickle stream
    again = adapter.deserialize(SourceBlob(blob.data, blob.media_type))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X))


def test_sklearn_task_follows_the_estimator_kind() -> None:
    X, y = iris()
    adapter = adapter_for_framework("sklearn")
    assert adapter.task(LogisticRegression(max_iter=300).fit(X, y)) is mf.Task.CLASSIFICATION
    assert adapter.task(LinearRegression().fit(X, y)) is mf.Task.REGRESSION
    assert adapter.task(StandardScaler().fit(X)) is mf.Task.OTHER
    assert adapter.task(KMeans(n_clusters=2, n_init=1, random_state=0).fit(X)) is mf.Task.OTHER


def test_sklearn_input_dtype_without_converter_names_the_input_and_the_choices() -> None:
    X, y = iris()
    model = LogisticRegression(max_iter=300).fit(X, y)
    signature = Signature(inputs=(TensorSpec(name="pixels", dtype="uint16", shape=(None, 4)),))
    with pytest.raises(mf.UnsupportedModelError) as info:
        adapter_for_framework("sklearn").to_onnx(model, signature, FreezeSettings())
    message = str(info.value)
    assert "LogisticRegression with uint16 input 'pixels'" in message
    assert "cast the input to one of float32, float64, int64" in message


@pytest.mark.torch
def test_torch_objects_find_the_torch_adapter() -> None:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(3, 1))
    program = torch.export.export(net, (torch.zeros(2, 3),))
    scripted = torch.jit.script(net)
    for model in (net, program, scripted):
        assert find_adapter(model).framework == "torch"
    assert adapter_for_framework("torch").framework == "torch"
    # A bare tensor is not a model.
    with pytest.raises(mf.UnsupportedModelError, match=r"torch\.Tensor"):
        find_adapter(torch.zeros(3))
