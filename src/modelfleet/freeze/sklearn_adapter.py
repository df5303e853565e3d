"""scikit-learn: stored with skops (no pickle), frozen with skl2onnx."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import MissingDependencyError, UnsupportedModelError, UntrustedArtifactError
from modelfleet.freeze.adapter import SourceBlob
from modelfleet.registry import Task, package_version
from modelfleet.signature import Signature, infer_signature

SKOPS_MEDIA_TYPE = "application/vnd.skops"


def _require(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MissingDependencyError(
            module.split(".", maxsplit=1)[0],
            "train",
            purpose="register and freeze scikit-learn models",
        ) from exc


def final_estimator(model: Any) -> Any:
    """The last step of (nested) Pipelines: the estimator whose outputs the graph returns."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


class SklearnAdapter:
    """Adapter for scikit-learn estimators and Pipelines."""

    framework = "sklearn"

    def accepts(self, model: object) -> bool:
        """True for any scikit-learn estimator."""
        base = _require("sklearn.base")
        return isinstance(model, base.BaseEstimator)

    def framework_version(self) -> str:
        """Installed scikit-learn version."""
        return package_version("scikit-learn") or "unknown"

    def task(self, model: Any) -> Task:
        """Classification, regression, or other (transformers, clusterers)."""
        base = _require("sklearn.base")
        if base.is_classifier(model):
            return Task.CLASSIFICATION
        if base.is_regressor(model):
            return Task.REGRESSION
        return Task.OTHER

    def input_signature(self, sample: Any) -> Signature:
        """float64 samples become float32 inputs, the precision skl2onnx converters use."""
        return infer_signature(sample, float32=True)

    def normalize(self, model: Any, sample: Any) -> Any:
        """scikit-learn models are stored and frozen as they are."""
        return model

    def serialize(self, model: Any, sample: Any) -> SourceBlob:
        """skops bytes: a zip of JSON and arrays, loadable without executing code."""
        sio = _require("skops.io")
        return SourceBlob(sio.dumps(model), SKOPS_MEDIA_TYPE)

    def deserialize(self, blob: SourceBlob) -> Any:
        """Load bytes this adapter wrote; the sha256 check on read vouches for their types."""
        sio = _require("skops.io")
        return sio.loads(blob.data, trusted=sio.get_untrusted_types(data=blob.data))

    def to_onnx(self, model: Any, signature: Signature, settings: FreezeSettings) -> Any:
        """Convert with skl2onnx; classifiers output ``label`` and a ``probabilities`` matrix."""
        skl2onnx = _require("skl2onnx")
        types = _require("skl2onnx.common.data_types")
        makers = {
            "float32": types.FloatTensorType,
            "float64": types.DoubleTensorType,
            "int64": types.Int64TensorType,
            "int32": types.Int32TensorType,
            "bool": types.BooleanTensorType,
            "string": types.StringTensorType,
        }
        initial_types = []
        for spec in signature.inputs:
            if spec.dtype not in makers:
                raise UnsupportedModelError(
                    f"{type(model).__name__} with {spec.dtype} input {spec.name!r}",
                    hint=f"cast the input to one of {', '.join(makers)}",
                )
            initial_types.append((spec.name, makers[spec.dtype]([None, *spec.shape[1:]])))
        options: dict[int, dict[str, Any]] = {}
        head = final_estimator(model)
        if hasattr(head, "predict_proba"):
            options[id(head)] = {"zipmap": False}
        try:
            return skl2onnx.convert_sklearn(
                model,
                initial_types=initial_types,
                options=options,
                target_opset=settings.opset,
            )
        except (RuntimeError, NotImplementedError, TypeError, KeyError, ValueError) as exc:
            # skl2onnx reports unsupported estimators as MissingShapeCalculator (a
            # RuntimeError) or MissingConverter; wrap them all with the figures we know.
            raise UnsupportedModelError(
                f"{type(model).__name__} ({type(exc).__name__}: {_first_line(exc)})",
                hint=(
                    "skl2onnx cannot convert it; register with freeze=False (--no-freeze) to "
                    "keep the source, or register an ONNX graph you export yourself"
                ),
            ) from exc

    def predict(self, model: Any, sample: Any) -> list[np.ndarray[Any, Any]]:
        """``predict`` (+ ``predict_proba``) or ``transform``, as the graph orders them."""
        if hasattr(model, "predict"):
            outputs = [np.asarray(model.predict(sample))]
            if hasattr(final_estimator(model), "predict_proba"):
                outputs.append(np.asarray(model.predict_proba(sample)))
            return outputs
        return [np.asarray(model.transform(sample))]


def check_skops_file(data: bytes, path: str, *, trust: bool) -> list[str]:
    """Types in a user's skops file that skops does not trust; refused unless ``trust``."""
    sio = _require("skops.io")
    untrusted: list[str] = list(sio.get_untrusted_types(data=data))
    if untrusted and not trust:
        raise UntrustedArtifactError(
            path, f"it contains types skops does not trust by default: {', '.join(untrusted)}"
        )
    return untrusted


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
