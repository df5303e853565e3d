"""ONNX graphs registered as they are: checked with the ONNX checker, signature read from them."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import FreezeError, MissingDependencyError
from modelfleet.freeze.adapter import SourceBlob
from modelfleet.registry import Task, package_version
from modelfleet.signature import STRING, Signature, TensorSpec

ONNX_MEDIA_TYPE = "application/onnx"


def onnx_module() -> Any:
    """The ``onnx`` package, or a clear error naming the extra."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError(
            "onnx", "onnx", purpose="check and convert ONNX graphs"
        ) from exc
    return onnx


def load_graph(data: bytes, *, origin: str = "the ONNX graph") -> Any:
    """Parse and check ONNX bytes; a corrupt or invalid graph gets a clear error."""
    onnx = onnx_module()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise FreezeError(
            f"{origin} is not a valid ONNX file ({type(exc).__name__})",
            hint="re-export the model to ONNX",
        ) from exc
    check_graph(model, origin=origin)
    return model


def check_graph(model: Any, *, origin: str = "the ONNX graph") -> None:
    """Run the ONNX checker (with shape inference) and wrap its complaint."""
    onnx = onnx_module()
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise FreezeError(
            f"{origin} fails the ONNX checker: {str(exc).strip().splitlines()[0][:300]}",
            hint="fix the exporter settings (opset, shapes) and export again",
        ) from exc
    if not model.graph.input or not model.graph.output:
        raise FreezeError(f"{origin} has no inputs or no outputs", hint="export a complete graph")


def graph_signature(model: Any) -> Signature:
    """Inputs (initializers excluded) and outputs of an ONNX graph; symbolic dims are dynamic."""
    onnx = onnx_module()
    initializers = {init.name for init in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.STRING:
            dtype = STRING
        else:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        # dim_value 0 is a fixed, empty axis (set in the proto even though it is the default);
        # only a dim_param or an unset dim is open-ended.
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
            for d in tensor.shape.dim
        )
        return TensorSpec(name=value.name, dtype=dtype, shape=dims)

    return Signature(
        inputs=tuple(spec(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(spec(v) for v in model.graph.output),
    )


class OnnxAdapter:
    """Adapter for ``onnx.ModelProto``: the source is the graph itself."""

    framework = "onnx"

    def accepts(self, model: object) -> bool:
        """True for ``onnx.ModelProto``."""
        return isinstance(model, onnx_module().ModelProto)

    def framework_version(self) -> str:
        """Installed onnx version."""
        return package_version("onnx") or "unknown"

    def task(self, model: Any) -> Task:
        """A bare graph does not say what it predicts."""
        return Task.OTHER

    def input_signature(self, sample: Any) -> Signature:
        """A graph declares its own inputs; the sample does not change them."""
        raise FreezeError("an ONNX graph's signature is read from the graph, not a sample")

    def normalize(self, model: Any, sample: Any) -> Any:
        """Graphs are stored as they are."""
        return model

    def serialize(self, model: Any, sample: Any) -> SourceBlob:
        """The graph's protobuf bytes."""
        return SourceBlob(model.SerializeToString(), ONNX_MEDIA_TYPE)

    def deserialize(self, blob: SourceBlob) -> Any:
        """Parse and check the graph."""
        return load_graph(blob.data)

    def to_onnx(self, model: Any, signature: Signature, settings: FreezeSettings) -> Any:
        """Nothing to convert: the graph is checked and returned."""
        check_graph(model)
        return model

    def predict(self, model: Any, sample: Any) -> list[np.ndarray[Any, Any]]:
        """The source is the graph, so there is no second implementation to compare with."""
        raise FreezeError("an ONNX source has no separate implementation to run")
