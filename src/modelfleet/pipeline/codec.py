"""Storing step outputs in the artifact store: safe formats only, chosen by type."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelfleet.datasets import decode_sample, encode_sample
from modelfleet.errors import ModelfleetError

JSON = "application/json"
TABLE = "application/x-npz"
SKOPS = "application/vnd.skops"


def _is_frame(value: Any) -> bool:
    return type(value).__name__ in ("DataFrame", "Series") and hasattr(value, "to_numpy")


def encode(value: Any) -> tuple[bytes, str]:
    """``(bytes, media type)`` for a step output; pickle is never used."""
    if _is_frame(value) or isinstance(value, np.ndarray):
        if type(value).__name__ == "Series":
            value = value.to_frame()
        return encode_sample(value), TABLE
    if type(value).__module__.startswith("sklearn") or hasattr(value, "get_params"):
        import skops.io as sio

        return sio.dumps(value), SKOPS
    try:
        return json.dumps(value, sort_keys=True, default=_plain).encode(), JSON
    except TypeError as exc:
        raise ModelfleetError(
            f"cannot store a step output of type {type(value).__name__}",
            hint="return arrays, DataFrames, scikit-learn models or JSON values from steps",
        ) from exc


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def decode(data: bytes, media_type: str) -> Any:
    """Inverse of :func:`encode`."""
    if media_type == TABLE:
        return decode_sample(data)
    if media_type == SKOPS:
        import skops.io as sio

        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    return json.loads(data)
