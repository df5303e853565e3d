"""Freezing scikit-learn models: every family the issue names, verified against the source."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.registry import Registry
from tests.models import iris


def _regression_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    return X, X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(scale=0.1, size=300)


CLASSIFIERS = {
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    "tree": lambda: DecisionTreeClassifier(max_depth=4, random_state=0),
    "forest": lambda: RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0),
    "gboost": lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
    "histgb": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
    "mlp": lambda: make_pipeline(
        MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    ),
}
REGRESSORS = {
    "linear": LinearRegression,
    "ridge": Ridge,
    "forest": lambda: RandomForestRegressor(n_estimators=10, max_depth=4, random_state=0),
    "histgb": lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0),
    "mlp": lambda: MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0),
}


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_classifiers_freeze_with_verified_labels(kind: str, registry: Registry) -> None:
    X, y = iris()
    model = CLASSIFIERS[kind]().fit(X, y)
    version = mf.register(model, name=kind, sample_input=X, registry=registry)
    record = version.verification or {}
    assert record["label_agreement"] == 1.0
    assert record["max_abs_diff"] <= 1e-4
    assert version.task is mf.Task.CLASSIFICATION
    assert version.signature.output_names == ["label", "probabilities"]
    assert version.signature.inputs[0].shape == (None, 4)
    # The stored graph runs on any batch size and reproduces the source model.
    session = ort.InferenceSession(registry.read_artifact(version, "onnx"))
    labels, proba = session.run(None, {"input": X[:7]})
    np.testing.assert_array_equal(labels, model.predict(X[:7]))
    np.testing.assert_allclose(proba, model.predict_proba(X[:7]), atol=1e-4)
    assert {a.role for a in version.artifacts} == {"source", "onnx", "sample"}


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
def test_regressors_freeze(kind: str, registry: Registry) -> None:
    X, y = _regression_data()
    model = REGRESSORS[kind]().fit(X, y)
    version = mf.register(model, name=f"reg-{kind}", sample_input=X[:50], registry=registry)
    assert version.task is mf.Task.REGRESSION
    assert (version.verification or {})["max_abs_diff"] <= 1e-4


def test_column_transformer_with_numeric_and_categorical_columns(registry: Registry) -> None:
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, 400).astype(np.int64),
            "charges": rng.normal(70, 20, 400),
            "plan": rng.choice(["basic", "plus", "pro"], 400),
        }
    )
    churn = ((frame["tenure"] < 12) & (frame["plan"] == "basic")).astype(int)
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ["tenure", "charges"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = make_pipeline(prep, LogisticRegression(max_iter=500)).fit(frame, churn)
    version = mf.register(model, name="churn", sample_input=frame.head(100), registry=registry)
    specs = {s.name: (s.dtype, s.shape) for s in version.signature.inputs}
    assert specs == {
        "tenure": ("int64", (None, 1)),
        "charges": ("float32", (None, 1)),
        "plan": ("string", (None, 1)),
    }
    assert (version.verification or {})["label_agreement"] == 1.0


def test_tolerance_failure_reports_figures_and_registers_nothing(
    registry: Registry, settings: Settings
) -> None:
    X, y = iris()
    model = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)
    )
    model.fit(X, y)
    strict = settings.model_copy(
        update={"freeze": settings.freeze.model_copy(update={"atol": 1e-15})}
    )
    with pytest.raises(
        mf.VerificationError, match=r"max_abs_diff=.*allowed max_abs_diff: 1e-15"
    ) as info:
        mf.register(model, name="strict", sample_input=X, settings=strict, registry=registry)
    assert info.value.figures["max_abs_diff"] > 1e-15
    assert registry.models() == []


class _Handmade(ClassifierMixin, BaseEstimator):
    """A valid scikit-learn classifier that skl2onnx has no converter for."""

    def fit(self, X: Any, y: Any) -> _Handmade:
        self.classes_ = np.unique(y)
        return self

    def predict(self, X: Any) -> Any:
        return np.full(len(X), self.classes_[0])


def test_unsupported_estimator_gets_a_clear_error(registry: Registry) -> None:
    X, y = iris()
    with pytest.raises(mf.UnsupportedModelError, match=r"_Handmade.*--no-freeze"):
        mf.register(_Handmade().fit(X, y), name="odd", sample_input=X, registry=registry)
    assert registry.models() == []
    # Kept without a graph, it can still be registered (source only).
    version = mf.register(
        _Handmade().fit(X, y), name="odd", sample_input=X, freeze=False, registry=registry
    )
    assert version.artifact("onnx") is None


def test_objects_of_no_framework_are_refused(registry: Registry) -> None:
    with pytest.raises(mf.UnsupportedModelError, match=r"builtins\.dict.*supported:"):
        mf.register({"weights": [1, 2]}, name="dict", registry=registry)


def test_freeze_later_from_the_stored_source(registry: Registry) -> None:
    X, y = iris()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    version = mf.register(model, name="late", sample_input=X, freeze=False, registry=registry)
    assert version.artifact("onnx") is None
    frozen = mf.freeze_version("late:1", registry=registry)
    assert frozen.artifact("onnx") is not None
    assert (frozen.verification or {})["label_agreement"] == 1.0
    assert frozen.signature.output_names == ["label", "probabilities"]
    with pytest.raises(mf.RegistryError, match="already frozen"):
        mf.freeze_version("late:1", registry=registry)


def test_sample_is_required_to_freeze(registry: Registry) -> None:
    X, y = iris()
    model = LogisticRegression(max_iter=300).fit(X, y)
    with pytest.raises(mf.SignatureError, match="needs a sample input"):
        mf.register(model, name="nosample", registry=registry)
    assert registry.models() == []
