"""Sample and evaluation data on disk: ``.npz``/``.npy``/``.csv`` in, named arrays out.

Samples are stored with a version as ``.npz`` (never pickled) together with their layout, so
a DataFrame sample comes back as a DataFrame when a source model is verified again later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet.errors import MissingDependencyError, ModelfleetError, SignatureError
from modelfleet.signature import to_named_arrays

_LAYOUT_KEY = "__layout__"
_LABEL_NAMES = ("label", "target", "y")


def _is_dataframe(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns")


def encode_sample(sample: Any) -> bytes:
    """Serialize a sample (array, DataFrame or mapping) to ``.npz`` bytes without pickle."""
    if _is_dataframe(sample):
        layout = "frame"
    elif isinstance(sample, dict):
        layout = "mapping"
    else:
        layout = "array"
    arrays: dict[str, Any] = {_LAYOUT_KEY: np.array(layout)}
    for name, array in to_named_arrays(sample).items():
        # Object arrays would need pickle; text is stored as fixed-width unicode instead.
        arrays[name] = array.astype(str) if array.dtype.kind == "O" else array
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def decode_sample(data: bytes) -> Any:
    """Inverse of :func:`encode_sample`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        layout = str(npz[_LAYOUT_KEY]) if _LAYOUT_KEY in npz.files else "mapping"
        arrays = {k: npz[k] for k in npz.files if k != _LAYOUT_KEY}
    arrays = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in arrays.items()}
    if layout == "array":
        return arrays["input"]
    if layout == "frame":
        return _frame({k: v.reshape(-1) for k, v in arrays.items()})
    return arrays


def _frame(columns: dict[str, np.ndarray[Any, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError("pandas", "train", purpose="rebuild a table sample") from exc
    return pd.DataFrame(columns)


@dataclass(frozen=True, slots=True)
class LabeledData:
    """Features (anything :func:`prepare_inputs` takes) and optional true labels."""

    features: Any
    labels: np.ndarray[Any, Any] | None


def read_data(path: Path, *, label: str | None = None) -> LabeledData:
    """Read features and labels from ``.npz`` (keys X/y or input names), ``.npy`` or ``.csv``.

    In a CSV file the label column is ``label`` (or the name given); ``target`` and ``y``
    are recognised too. A CSV without such a column is all features.
    """
    if not path.is_file():
        raise ModelfleetError(f"data file {path} does not exist", hint="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return LabeledData(np.load(path, allow_pickle=False), None)
        if suffix == ".npz":
            return _read_npz(path, label)
        if suffix == ".csv":
            return _read_csv(path, label)
    except (ValueError, OSError) as exc:
        raise ModelfleetError(
            f"cannot read data file {path}: {exc}", hint="check the file is a valid " + suffix
        ) from exc
    raise ModelfleetError(
        f"unsupported data file {path.name}", hint="use a .npz, .npy or .csv file"
    )


def _read_npz(path: Path, label: str | None) -> LabeledData:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != _LAYOUT_KEY}
    label_key = label or next((k for k in ("y", *_LABEL_NAMES) if k in arrays), None)
    labels = arrays.pop(label_key) if label_key and label_key in arrays else None
    if label and labels is None:
        raise SignatureError(f"{path.name} has no array named {label!r}")
    if set(arrays) == {"X"}:
        return LabeledData(arrays["X"], labels)
    if not arrays:
        raise SignatureError(f"{path.name} holds no feature arrays", hint="save X (and y)")
    return LabeledData(arrays, labels)


def _read_csv(path: Path, label: str | None) -> LabeledData:
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError("pandas", "train", purpose="read CSV data") from exc
    frame = pd.read_csv(path)
    label_col = label or next((c for c in _LABEL_NAMES if c in frame.columns), None)
    if label and label not in frame.columns:
        raise SignatureError(
            f"{path.name} has no column {label!r}", hint=f"columns: {', '.join(frame.columns)}"
        )
    labels = frame.pop(label_col).to_numpy() if label_col else None
    if all(dtype.kind in "fiub" for dtype in frame.dtypes):
        return LabeledData(frame.to_numpy(), labels)
    return LabeledData(frame, labels)
