"""Tensor signatures: the names, dtypes and shapes a model takes and returns.

A signature is inferred from a sample input (numpy array, pandas DataFrame, dict of arrays) or
read from an ONNX graph, stored with the version, and enforced on every input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from modelfleet.errors import SignatureError

Arrays = Mapping[str, np.ndarray[Any, Any]]
"""Tensors by name, read-only: what a function takes when it only looks at them."""
ArrayDict = dict[str, np.ndarray[Any, Any]]
"""Tensors by name in a dict the holder owns and may fill or change."""

STRING = "string"
_SUPPORTED = {
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
    STRING,
}


class TensorSpec(BaseModel):
    """One named tensor; ``None`` in ``shape`` marks a dynamic axis (the batch axis first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype values of this tensor are cast to (strings become objects)."""
        return np.dtype(object) if self.dtype == STRING else np.dtype(self.dtype)

    @property
    def has_batch_axis(self) -> bool:
        """True when the first axis is dynamic, so rows can be batched and split."""
        return bool(self.shape) and self.shape[0] is None

    def describe(self) -> str:
        """Render as ``name: float32[?, 30]`` for messages and tables."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


class Signature(BaseModel):
    """The inputs and outputs of a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()

    @property
    def input_names(self) -> list[str]:
        """Names of the inputs, in graph order."""
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs, in graph order."""
        return [t.name for t in self.outputs]

    def describe(self) -> str:
        """Render as ``(inputs) -> (outputs)``."""
        ins = ", ".join(t.describe() for t in self.inputs)
        outs = ", ".join(t.describe() for t in self.outputs)
        return f"({ins}) -> ({outs})"


def dtype_name(dtype: np.dtype[Any]) -> str:
    """Map a numpy dtype to a signature dtype name; text and objects become ``string``."""
    if dtype.kind in ("U", "S", "O"):
        return STRING
    name = dtype.name
    if name not in _SUPPORTED:
        raise SignatureError(
            f"unsupported dtype {name}",
            hint=f"convert the data to one of: {', '.join(sorted(_SUPPORTED))}",
        )
    return name


def _is_dataframe(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns")


def _as_array(value: Any) -> np.ndarray[Any, Any]:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch.Tensor without importing it
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def _column_dtype(values: np.ndarray[Any, Any]) -> str:
    # Floating columns are served as float32: that is what the ONNX converters emit and what
    # clients send; integers stay int64 and text becomes string.
    if values.dtype.kind == "f":
        return "float32"
    if values.dtype.kind in ("i", "u"):
        return "int64"
    return dtype_name(values.dtype)


def to_named_arrays(data: Any) -> ArrayDict:
    """Split a sample into named arrays: a DataFrame gives one ``[n, 1]`` array per column."""
    if _is_dataframe(data):
        out: ArrayDict = {}
        for column in data.columns:
            values = np.asarray(data[column].to_numpy())
            if values.dtype.kind == "O" or str(data[column].dtype) in ("string", "str"):
                values = values.astype(str).astype(object)
            out[str(column)] = values.reshape(-1, 1)
        return out
    if isinstance(data, Mapping):
        return {str(k): _as_array(v) for k, v in data.items()}
    array = _as_array(data)
    if array.dtype.kind == "O" and array.ndim == 0:
        raise SignatureError(f"cannot infer a signature from a {type(data).__name__}")
    return {"input": array}


def infer_signature(sample: Any, *, float32: bool = False) -> Signature:
    """Infer the input side of a signature from a sample; the batch axis becomes dynamic.

    Columns of a DataFrame take float32 for floats and int64 for integers; with ``float32``
    float64 arrays are declared float32 too (what converters and clients expect).
    """
    arrays = to_named_arrays(sample)
    if not arrays:
        raise SignatureError("the sample input is empty", hint="pass at least one row")
    specs = []
    for name, array in arrays.items():
        if array.ndim == 0 or array.shape[0] == 0:
            raise SignatureError(
                f"sample input {name!r} has no rows (shape {array.shape})",
                hint="pass a sample with at least one row",
            )
        if _is_dataframe(sample):
            dtype = _column_dtype(array)
        elif float32 and array.dtype == np.float64:
            dtype = "float32"
        else:
            dtype = dtype_name(array.dtype)
        specs.append(TensorSpec(name=name, dtype=dtype, shape=(None, *array.shape[1:])))
    return Signature(inputs=tuple(specs))


def _coerce(spec: TensorSpec, value: Any) -> np.ndarray[Any, Any]:
    array = _as_array(value)
    if spec.dtype == STRING:
        if array.dtype.kind not in ("U", "S", "O"):
            raise SignatureError(
                f"input {spec.name!r} must be text, got {array.dtype.name}",
                hint=f"send strings for {spec.describe()}",
            )
        array = array.astype(str).astype(object)
    elif array.dtype != spec.numpy_dtype:
        if array.dtype.kind == "O":
            array = _numbers_from_objects(spec, array)
        if array.dtype.kind in ("U", "S"):
            raise SignatureError(
                f"input {spec.name!r} must be {spec.dtype}, got text",
                hint=f"send numbers for {spec.describe()}",
            )
        if array.dtype.kind == "f" and spec.numpy_dtype.kind in ("i", "u", "b"):
            _check_whole(spec, array)
        array = array.astype(spec.numpy_dtype)
    if spec.has_batch_axis and array.ndim == len(spec.shape) - 1:
        array = array.reshape(1, *array.shape)  # one row given without its batch axis
    _check_shape(spec, array)
    return array


def _check_whole(spec: TensorSpec, array: np.ndarray[Any, Any]) -> None:
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise SignatureError(
            f"input {spec.name!r} must hold {spec.dtype} values, got fractions",
            hint=f"send whole numbers for {spec.describe()}",
        )


def _numbers_from_objects(spec: TensorSpec, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # Mixed tables (numbers and text in one object array) arrive here column by column.
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError):
        raise SignatureError(
            f"input {spec.name!r} must be {spec.dtype}, got text",
            hint=f"send numbers for {spec.describe()}",
        ) from None


def _check_shape(spec: TensorSpec, array: np.ndarray[Any, Any]) -> None:
    expected = spec.shape
    ok = array.ndim == len(expected) and all(
        want is None or want == got for want, got in zip(expected, array.shape, strict=True)
    )
    if not ok:
        raise SignatureError(
            f"input {spec.name!r} has shape {list(array.shape)}, expected {spec.describe()}",
            hint="reshape the data to match the model signature ('modelfleet show' prints it)",
        )


def prepare_inputs(signature: Signature, data: Any) -> ArrayDict:
    """Validate ``data`` against the signature and return the arrays a runtime takes.

    ``data`` may be a single array (for a one-input model, or split into the inputs' columns
    when every input is one column wide), a DataFrame or a mapping of input names to arrays.
    """
    inputs = signature.inputs
    if _is_dataframe(data) or isinstance(data, Mapping):
        named = to_named_arrays(data)
    elif len(inputs) == 1:
        named = {inputs[0].name: _as_array(data)}
    else:
        named = _split_columns(inputs, _as_array(data))
    unknown = sorted(set(named) - set(signature.input_names))
    missing = [name for name in signature.input_names if name not in named]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing inputs {missing}")
        if unknown:
            parts.append(f"unknown inputs {unknown}")
        raise SignatureError(
            "; ".join(parts), hint=f"the model takes {', '.join(signature.input_names)}"
        )
    arrays = {spec.name: _coerce(spec, named[spec.name]) for spec in inputs}
    _check_same_rows(arrays)
    return arrays


def _split_columns(inputs: Sequence[TensorSpec], array: np.ndarray[Any, Any]) -> ArrayDict:
    if not all(spec.shape == (None, 1) for spec in inputs):
        raise SignatureError(
            f"the model has {len(inputs)} inputs; pass a mapping of input names to arrays",
            hint=f"inputs: {', '.join(spec.describe() for spec in inputs)}",
        )
    if array.ndim != 2 or array.shape[1] != len(inputs):
        raise SignatureError(
            f"expected a table of {len(inputs)} columns, got shape {list(array.shape)}",
            hint=f"columns in order: {', '.join(spec.name for spec in inputs)}",
        )
    return {spec.name: array[:, i : i + 1] for i, spec in enumerate(inputs)}


def _check_same_rows(arrays: Arrays) -> None:
    rows = {name: a.shape[0] for name, a in arrays.items() if a.ndim > 0}
    if len(set(rows.values())) > 1:
        raise SignatureError(
            f"inputs have different numbers of rows: {rows}",
            hint="send the same number of rows for every input",
        )


def count_rows(arrays: Arrays) -> int:
    """Number of rows in prepared inputs (the batch axis of the first input)."""
    first = next(iter(arrays.values()))
    return int(first.shape[0]) if first.ndim > 0 else 1
