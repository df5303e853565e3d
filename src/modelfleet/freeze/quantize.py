"""Quantize an fp32 ONNX graph to fp16 or int8, and judge the result on evaluation data.

fp16 goes through onnxconverter-common (inputs and outputs stay fp32, ML-domain operators such
as tree ensembles stay fp32); int8 through onnxruntime's quantization tools, dynamically or
statically with calibration data. A graph with nothing to quantize is reported as such.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet.errors import MissingDependencyError, QuantizeError
from modelfleet.freeze.measure import measure_latency, offline_session, run_graph
from modelfleet.freeze.onnx_adapter import check_graph, onnx_module
from modelfleet.freeze.verify import score
from modelfleet.registry import Task, Variant

logger = logging.getLogger(__name__)

# Where int8 pays: the operators that hold weight matrices. Everything else stays float.
_COMPUTE_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose"}
_CALIBRATION_BATCH = 32
_DROP_TOLERANCE = 1e-10


class Method(StrEnum):
    """How int8 scales are found: from the weights only, or from calibration data."""

    DYNAMIC = "dynamic"
    STATIC = "static"


@dataclass(frozen=True)
class Quantized:
    """A quantized graph and its figures next to the parent's."""

    graph: bytes
    metric: str
    before: float
    after: float
    figures: dict[str, Any]

    def exceeds(self, max_drop: float) -> bool:
        """True when the metric fell by more than ``max_drop``; a drop of exactly that passes.

        The drop is a difference of two float means, so a drop that is exactly the allowance
        in decimal (1 wrong row in 50 against ``max_drop=0.02``: ``1.0 - 0.98`` is
        ``0.020000000000000018``) lands a rounding error above it. The tolerance, relative
        to the metric's size (r2 can be far from 1), is millions of times that error and
        still below what one row in a billion weighs in an accuracy.
        """
        scale = max(1.0, abs(self.before), abs(self.after))
        return self.before - self.after > max_drop + _DROP_TOLERANCE * scale


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime's quantizer reports through the root logger (logging.warning), which would
    # also install a default handler; keep its advice out of our output.
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _without_shape_hints(graph: bytes) -> bytes:
    # value_info entries are optional hints; the quantizer re-infers shapes and fails when an
    # exporter's hints disagree with its own inference (seen with torch's dynamo exporter).
    model = onnx_module().load_from_string(graph)
    del model.graph.value_info[:]
    return bytes(model.SerializeToString())


def _with_files(graph: bytes, work: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="modelfleet-quantize-") as tmp, _quiet_root_logger():
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(_without_shape_hints(graph))
        work(src, dst, Path(tmp))
        return dst.read_bytes()


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx", purpose="quantize to int8") from exc
    return quantization


def to_fp16(graph: bytes) -> bytes:
    """Halve float weights; inputs and outputs keep fp32 so clients need not change."""
    onnx = onnx_module()
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise MissingDependencyError(
            "onnxconverter-common", "onnx", purpose="quantize to fp16"
        ) from exc
    model = onnx.load_from_string(graph)
    with warnings.catch_warnings():
        # It warns for every weight it clamps to fp16's range; the metric check judges that.
        warnings.filterwarnings("ignore", "the float32 number", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    _retarget_casts(converted, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return bytes(converted.SerializeToString())


def _retarget_casts(model: Any, old: int, new: int) -> None:
    """Point ``Cast(to=old)`` nodes whose output the converter retyped to ``new`` at ``new``.

    onnxconverter-common retypes the tensors downstream of an existing float32 Cast (skl2onnx
    emits one in front of MLPs) but leaves the Cast's ``to`` attribute alone, which makes the
    graph inconsistent; the ONNX checker rejects it.
    """
    retyped = {vi.name for vi in model.graph.value_info if vi.type.tensor_type.elem_type == new}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in retyped:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == old:
                    attribute.i = new


class _Calibration:
    """Feeds calibration batches to onnxruntime's static quantizer."""

    def __init__(self, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        total = next(iter(arrays.values())).shape[0]
        self._batches: Iterator[dict[str, np.ndarray[Any, Any]]] = iter(
            [
                {k: v[i : i + _CALIBRATION_BATCH] for k, v in arrays.items()}
                for i in range(0, total, _CALIBRATION_BATCH)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - called by some onnxruntime calibrators
        return None


def to_int8(graph: bytes, method: Method, calibration: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """int8 weights (dynamic) or weights and activations in QDQ form (static)."""
    q = _quantization()

    def work(src: Path, dst: Path, _tmp: Path) -> None:
        if method is Method.DYNAMIC:
            q.quantize_dynamic(
                src, dst, weight_type=q.QuantType.QInt8, op_types_to_quantize=list(_COMPUTE_OPS)
            )
            return
        q.quantize_static(
            src,
            dst,
            _Calibration(calibration),
            quant_format=q.QuantFormat.QDQ,
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            op_types_to_quantize=list(_COMPUTE_OPS),
        )

    try:
        return _with_files(graph, work)
    except Exception as exc:  # onnxruntime's quantizer raises many types
        raise QuantizeError(
            f"int8 {method.value} quantization failed: {str(exc).splitlines()[0][:300]}",
            hint="try --method dynamic, or keep fp32 for this model",
        ) from exc


def _nothing_to_gain(graph: bytes, variant: Variant) -> str | None:
    """Why quantizing ``graph`` to ``variant`` cannot help, or None when it can."""
    onnx = onnx_module()
    model = onnx.load_from_string(graph)
    if variant is Variant.INT8 and not {n.op_type for n in model.graph.node} & _COMPUTE_OPS:
        return "no operator could be quantized to int8 (e.g. tree ensembles have none)"
    floats = sum(
        init.data_type == onnx.TensorProto.FLOAT
        for init in model.graph.initializer
        if init.dims and int(np.prod(init.dims)) > 1
    )
    if variant is Variant.FP16 and floats == 0:
        return "no float weights could be halved (e.g. tree ensembles stay fp32)"
    return None


def quantize_graph(
    graph: bytes,
    *,
    variant: Variant,
    method: Method,
    task: Task,
    features: Mapping[str, np.ndarray[Any, Any]],
    labels: np.ndarray[Any, Any] | None,
    latency_runs: int,
) -> Quantized:
    """Quantize ``graph`` and measure size, metric and latency before and after."""
    if variant is Variant.FP32:
        raise QuantizeError("fp32 is the unquantized graph", hint="choose --to fp16 or int8")
    why = _nothing_to_gain(graph, variant)
    if why is not None:
        raise QuantizeError(
            f"{variant.value} quantization brings nothing here: {why}; no version was created",
            hint="keep serving the fp32 version",
        )
    child = to_fp16(graph) if variant is Variant.FP16 else to_int8(graph, method, features)
    check_graph(onnx_module().load_from_string(child), origin=f"the {variant.value} graph")
    parent_session, child_session = offline_session(graph), offline_session(child)
    reference = run_graph(parent_session, features)
    metric, before = score(task, reference, labels, reference)
    _, after = score(task, run_graph(child_session, features), labels, reference)
    figures = {
        "variant": variant.value,
        "quantizer": f"int8-{method.value}" if variant is Variant.INT8 else "fp16-convert",
        "metric": metric,
        "metric_before": before,
        "metric_after": after,
        "size_bytes_before": len(graph),
        "size_bytes_after": len(child),
        "latency_before": measure_latency(parent_session, features, runs=latency_runs),
        "latency_after": measure_latency(child_session, features, runs=latency_runs),
        "eval_rows": int(next(iter(features.values())).shape[0]),
        "labels": labels is not None,
    }
    return Quantized(child, metric, before, after, figures)
