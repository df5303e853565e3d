"""The training data's reference profile, stored with a version for drift checks in serving.

Features are the columns of the model's inputs (``age``, or ``input[3]`` for a matrix input):
numeric ones keep decile bin edges with their shares (for PSI) and a sample of values (for
the Kolmogorov-Smirnov test); text ones keep category shares. Labels add the class balance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from modelfleet.signature import Arrays

PROFILE_MEDIA_TYPE = "application/vnd.modelfleet.profile+json"
SAMPLE_VALUES = 500
BINS = 10


def feature_columns(
    arrays: Arrays,
) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """``(feature name, 1-D values)`` for every column of every input."""
    for name, array in arrays.items():
        if array.ndim == 1:
            yield name, array
            continue
        flat = array.reshape(array.shape[0], -1)
        if flat.shape[1] == 1:
            yield name, flat[:, 0]
        else:
            for j in range(flat.shape[1]):
                yield f"{name}[{j}]", flat[:, j]


def _numeric(values: np.ndarray[Any, Any], rng: np.random.Generator) -> dict[str, Any]:
    clean = values[np.isfinite(values)].astype(np.float64)
    if clean.size == 0:
        return {"kind": "numeric", "edges": [], "shares": [], "sample": [], "count": 0}
    edges = np.unique(np.quantile(clean, np.linspace(0, 1, BINS + 1)))
    inner = edges[1:-1]  # open-ended outer bins: values beyond the training range still count
    counts = np.bincount(np.searchsorted(inner, clean, side="right"), minlength=len(inner) + 1)
    sample = rng.choice(clean, size=min(SAMPLE_VALUES, clean.size), replace=False)
    return {
        "kind": "numeric",
        "edges": inner.tolist(),
        "shares": (counts / counts.sum()).tolist(),
        "sample": np.sort(sample).tolist(),
        "mean": float(clean.mean()),
        "std": float(clean.std()),
        "count": int(clean.size),
    }


def _categorical(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    labels, counts = np.unique(values.astype(str), return_counts=True)
    return {
        "kind": "categorical",
        "shares": {str(k): float(c / counts.sum()) for k, c in zip(labels, counts, strict=True)},
        "count": int(counts.sum()),
    }


def build_profile(arrays: Arrays, labels: Any = None, *, seed: int = 0) -> dict[str, Any]:
    """The profile of training inputs (prepared arrays) and, if given, their labels."""
    rng = np.random.default_rng(seed)
    features = {}
    for name, values in feature_columns(arrays):
        if values.dtype.kind in "fiub":
            features[name] = _numeric(values.astype(np.float64), rng)
        else:
            features[name] = _categorical(values)
    profile: dict[str, Any] = {
        "features": features,
        "rows": int(next(iter(arrays.values())).shape[0]),
    }
    if labels is not None:
        profile["labels"] = _categorical(np.asarray(labels))
    return profile
