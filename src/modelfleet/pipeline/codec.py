"""Storing step outputs in the artifact store: safe formats only, chosen by type."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np

from modelfleet.errors import MissingDependencyError, ModelfleetError

JSON = "application/json"
ARRAYS = "application/vnd.modelfleet.arrays+npz"
SKOPS = "application/vnd.skops"
# Part of every step cache key: entries written in an older layout are never read back.
FORMAT = 2

_HINT = "return arrays, DataFrames, scikit-learn models or JSON values from steps"
_Add = Callable[[np.ndarray[Any, Any]], str]


class _UnstorableError(Exception):
    """A value inside a table or array that has no faithful safe form."""


def encode(value: Any) -> tuple[bytes, str]:
    """``(bytes, media type)`` for a step output; pickle is never used.

    Arrays and pandas objects come back with their type, index, names and dtypes; anything
    that would come back different is refused rather than stored.
    """
    if _is_pandas(value) or isinstance(value, np.ndarray):
        try:
            return _encode_arrays(value), ARRAYS
        except _UnstorableError as exc:
            raise ModelfleetError(
                f"cannot store a step output of type {type(value).__name__}: {exc}",
                hint=_HINT + "; convert such values to numbers, text or dates first",
            ) from exc
    if type(value).__module__.startswith("sklearn") or hasattr(value, "get_params"):
        import skops.io as sio

        return sio.dumps(value), SKOPS
    try:
        return json.dumps(value, sort_keys=True, default=_plain).encode(), JSON
    except TypeError as exc:
        raise ModelfleetError(
            f"cannot store a step output of type {type(value).__name__}", hint=_HINT
        ) from exc


def decode(data: bytes, media_type: str) -> Any:
    """Inverse of :func:`encode`."""
    if media_type == ARRAYS:
        return _decode_arrays(data)
    if media_type == SKOPS:
        import skops.io as sio

        return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    return json.loads(data)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def _is_pandas(value: Any) -> bool:
    # Exact types only: a subclass (a GeoDataFrame, say) would come back as its base class.
    name = type(value).__name__
    is_pandas = type(value).__module__.startswith("pandas")
    return is_pandas and (name in ("DataFrame", "Series") or name.endswith("Index"))


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingDependencyError("pandas", "train", purpose="read a cached table") from exc
    return pd


# -- the .npz layout: numbered arrays plus one JSON description of how they fit together --


def _encode_arrays(value: Any) -> bytes:
    arrays: dict[str, np.ndarray[Any, Any]] = {}

    def add(array: np.ndarray[Any, Any]) -> str:
        name = f"a{len(arrays)}"
        arrays[name] = array
        return name

    if isinstance(value, np.ndarray):
        if type(value) is not np.ndarray:
            raise _UnstorableError(f"{type(value).__name__} would come back as a plain ndarray")
        meta: dict[str, Any] = {"kind": "array", "values": _array_spec(value, add)}
    elif type(value).__name__ == "DataFrame":
        meta = {
            "kind": "frame",
            "index": _index_spec(value.index, add),
            "columns": _index_spec(value.columns, add),
            "values": [_frame_column(value, i, add) for i in range(value.shape[1])],
        }
    elif type(value).__name__ == "Series":
        meta = {
            "kind": "series",
            "index": _index_spec(value.index, add),
            "name": _label(value.name),
            "values": _column_spec(value, add),
        }
    else:
        meta = {"kind": "index", "index": _index_spec(value, add)}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def _decode_arrays(data: bytes) -> Any:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))
    if meta["kind"] == "array":
        return _array_from(meta["values"], arrays)
    pd = _pandas()
    if meta["kind"] == "index":
        return _index_from(meta["index"], arrays)
    index = _index_from(meta["index"], arrays)
    if meta["kind"] == "series":
        values = _column_from(meta["values"], arrays)
        return pd.Series(values, index=index, name=_untag(meta["name"]), copy=False)
    columns = [_column_from(spec, arrays) for spec in meta["values"]]
    # Positional keys, then the real labels: labels may repeat or be tuples.
    frame = pd.DataFrame(dict(enumerate(columns)), index=index)
    frame.columns = _index_from(meta["columns"], arrays)
    return frame


def _frame_column(frame: Any, position: int, add: _Add) -> dict[str, Any]:
    try:
        return _column_spec(frame.iloc[:, position], add)
    except _UnstorableError as exc:
        raise _UnstorableError(f"column {frame.columns[position]!r}: {exc}") from exc


def _array_spec(array: np.ndarray[Any, Any], add: _Add) -> dict[str, Any]:
    if not array.dtype.hasobject:
        return {"kind": "numpy", "data": add(array)}
    flat = array.reshape(-1)
    payload = np.array(json.dumps([_tag(item) for item in flat.tolist()]))
    spec = {"kind": "object", "data": "payload", "shape": list(array.shape)}
    back = _array_from(spec, {"payload": payload}).reshape(-1)
    if not all(_same(a, b) for a, b in zip(flat, back, strict=True)):
        raise _UnstorableError("it holds values that would not read back equal")
    return {**spec, "data": add(payload)}


def _array_from(spec: dict[str, Any], arrays: dict[str, np.ndarray[Any, Any]]) -> Any:
    if spec["kind"] == "numpy":
        return arrays[spec["data"]]
    items = [_untag(item) for item in json.loads(str(arrays[spec["data"]]))]
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # element by element: a list item must stay one item
        out[i] = item
    return out.reshape(spec.get("shape", (len(items),)))


def _column_spec(values: Any, add: _Add) -> dict[str, Any]:
    """One column (or index level) by its dtype: numpy data as is, the rest described."""
    pd = _pandas()
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categorical = pd.Categorical(values)
        return {
            "kind": "category",
            "codes": add(np.asarray(categorical.codes)),
            "categories": _index_spec(dtype.categories, add),
            "ordered": bool(dtype.ordered),
        }
    if isinstance(dtype, np.dtype):
        return _array_spec(np.asarray(values.to_numpy()), add)
    payload = np.array(json.dumps([_tag(v) for v in values.tolist()]))
    spec = {"kind": "extension", "dtype": str(dtype), "data": "payload"}
    # Nullable integers, strings, periods, time zones …: kept when the dtype can be named and
    # the values read back equal, refused otherwise (never stored as something else).
    try:
        back = _column_from(spec, {"payload": payload})
        same = back.dtype == dtype and pd.Series(back).equals(pd.Series(values.array))
    except (TypeError, ValueError) as exc:
        raise _UnstorableError(f"values of dtype {dtype} cannot be stored ({exc})") from exc
    if not same:
        raise _UnstorableError(f"values of dtype {dtype} would not read back equal")
    return {**spec, "data": add(payload)}


def _column_from(spec: dict[str, Any], arrays: dict[str, np.ndarray[Any, Any]]) -> Any:
    pd = _pandas()
    if spec["kind"] == "category":
        categories = _index_from(spec["categories"], arrays)
        return pd.Categorical.from_codes(
            arrays[spec["codes"]], dtype=pd.CategoricalDtype(categories, ordered=spec["ordered"])
        )
    if spec["kind"] == "extension":
        items = [_untag(item) for item in json.loads(str(arrays[spec["data"]]))]
        return pd.array(items, dtype=pd.api.types.pandas_dtype(spec["dtype"]))
    return _array_from(spec, arrays)


def _index_spec(index: Any, add: _Add) -> dict[str, Any]:
    pd = _pandas()
    if isinstance(index, pd.RangeIndex):
        bounds = [int(index.start), int(index.stop), int(index.step)]
        return {"kind": "range", "range": bounds, "name": _label(index.name)}
    if isinstance(index, pd.MultiIndex):
        levels = [_column_spec(index.get_level_values(i), add) for i in range(index.nlevels)]
        return {"kind": "multi", "levels": levels, "names": [_label(n) for n in index.names]}
    timed = isinstance(index, pd.DatetimeIndex | pd.TimedeltaIndex)
    return {
        "kind": "index",
        "values": _column_spec(index, add),
        "name": _label(index.name),
        # A DatetimeIndex's frequency is part of what makes two of them equal.
        "freq": index.freqstr if timed else None,
    }


def _index_from(spec: dict[str, Any], arrays: dict[str, np.ndarray[Any, Any]]) -> Any:
    pd = _pandas()
    if spec["kind"] == "range":
        return pd.RangeIndex(*spec["range"], name=_untag(spec["name"]))
    if spec["kind"] == "multi":
        levels = [_column_from(level, arrays) for level in spec["levels"]]
        return pd.MultiIndex.from_arrays(levels, names=[_untag(n) for n in spec["names"]])
    values = _column_from(spec["values"], arrays)
    name = _untag(spec["name"])
    if spec["freq"] is not None:
        timed = pd.TimedeltaIndex if values.dtype.kind == "m" else pd.DatetimeIndex
        return timed(values, name=name, freq=spec["freq"])
    # An object column stays object: pandas would otherwise infer a narrower dtype.
    dtype = object if isinstance(values, np.ndarray) and values.dtype == object else None
    return pd.Index(values, name=name, dtype=dtype)


# -- single values inside object columns and labels: JSON, with a tag for what JSON lacks --


def _label(value: Any) -> Any:
    try:
        tagged = _tag(value)
    except _UnstorableError as exc:
        raise _UnstorableError(f"a name or label {value!r} cannot be stored ({exc})") from exc
    return tagged


def _tag(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    kind = _kind(value)
    if kind is None:
        raise _UnstorableError(f"a value of type {type(value).__name__}")
    return {"$": kind, **_TAGGERS[kind](value)}


def _untag(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    return _UNTAGGERS[item["$"]](item)


# Exact types only: a subclass (a namedtuple, an OrderedDict) would come back as its base.
_PLAIN_KINDS: dict[type, str] = {
    tuple: "tuple",
    list: "list",
    dict: "dict",
    Decimal: "Decimal",
    bytes: "bytes",
    dt.datetime: "datetime",
    dt.date: "date",
    dt.time: "time",
    dt.timedelta: "timedelta",
}
_PANDAS_KINDS = ("Timestamp", "Timedelta", "NaTType", "NAType", "Period", "Interval")


def _kind(value: Any) -> str | None:
    cls = type(value)
    if cls in _PLAIN_KINDS:
        return _PLAIN_KINDS[cls]
    if cls.__module__.startswith("pandas") and cls.__name__ in _PANDAS_KINDS:
        return cls.__name__
    # numpy datetimes would come back in the wrong unit, so they are refused.
    if isinstance(value, np.generic) and value.dtype.kind not in "mMOV":
        return "numpy"
    return None


_TAGGERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "numpy": lambda v: {"dtype": v.dtype.str, "v": _tag(v.item())},
    "tuple": lambda v: {"v": [_tag(x) for x in v]},
    "list": lambda v: {"v": [_tag(x) for x in v]},
    "dict": lambda v: {"v": [[_tag(k), _tag(x)] for k, x in v.items()]},
    "Decimal": lambda v: {"v": str(v)},
    "bytes": lambda v: {"v": v.hex()},
    "datetime": lambda v: {"v": v.isoformat(), "tz": _tz(v)},
    "date": lambda v: {"v": v.isoformat()},
    "time": lambda v: {"v": v.isoformat(), "tz": _tz(v)},
    "timedelta": lambda v: {"v": [v.days, v.seconds, v.microseconds]},
    "Timestamp": lambda v: {"v": v.isoformat(), "unit": v.unit, "tz": _tz(v)},
    "Timedelta": lambda v: {"v": v.isoformat(), "unit": v.unit},
    "NaTType": lambda v: {},
    "NAType": lambda v: {},
    "Period": lambda v: {"v": str(v), "freq": v.freqstr},
    "Interval": lambda v: {"v": [_tag(v.left), _tag(v.right)], "closed": v.closed},
}


def _zoned(value: Any, tz: Any) -> Any:
    return value if tz is None else value.replace(tzinfo=_zone(tz))


def _stamp(item: dict[str, Any]) -> Any:
    stamp = _pandas().Timestamp(item["v"]).as_unit(item["unit"])
    return stamp if item["tz"] is None else stamp.tz_convert(_zone(item["tz"]))


_UNTAGGERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "numpy": lambda i: np.dtype(i["dtype"]).type(_untag(i["v"])),
    "tuple": lambda i: tuple(_untag(x) for x in i["v"]),
    "list": lambda i: [_untag(x) for x in i["v"]],
    "dict": lambda i: {_untag(k): _untag(x) for k, x in i["v"]},
    "Decimal": lambda i: Decimal(i["v"]),
    "bytes": lambda i: bytes.fromhex(i["v"]),
    "datetime": lambda i: _zoned(dt.datetime.fromisoformat(i["v"]), i["tz"]),
    "date": lambda i: dt.date.fromisoformat(i["v"]),
    "time": lambda i: _zoned(dt.time.fromisoformat(i["v"]), i["tz"]),
    "timedelta": lambda i: dt.timedelta(days=i["v"][0], seconds=i["v"][1], microseconds=i["v"][2]),
    "Timestamp": _stamp,
    "Timedelta": lambda i: _pandas().Timedelta(i["v"]).as_unit(i["unit"]),
    "NaTType": lambda i: _pandas().NaT,
    "NAType": lambda i: _pandas().NA,
    "Period": lambda i: _pandas().Period(i["v"], freq=i["freq"]),
    "Interval": lambda i: _pandas().Interval(
        _untag(i["v"][0]), _untag(i["v"][1]), closed=i["closed"]
    ),
}


def _tz(value: Any) -> Any:
    """A time zone by name (zoneinfo, pytz) or fixed offset in seconds (datetime.timezone)."""
    tz = value.tzinfo
    if tz is None:
        return None
    if isinstance(tz, dt.timezone):
        return tz.utcoffset(None).total_seconds()
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)
    if key is None:
        raise _UnstorableError(f"a time zone {tz!r} that has no name")
    return str(key)


def _zone(tz: Any) -> dt.tzinfo:
    if isinstance(tz, float | int):
        return dt.UTC if tz == 0 else dt.timezone(dt.timedelta(seconds=tz))
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


def _same(a: Any, b: Any) -> bool:
    if a is b:  # NaT and NA are singletons that equal nothing, themselves included
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
