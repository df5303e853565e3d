"""Input drift: a sliding window of recent inputs compared with the training profile.

Numeric features get the population stability index over the profile's decile bins and the
two-sample Kolmogorov-Smirnov statistic against the profile's sample of training values;
text features get the PSI over their categories (values never seen in training count as one
extra category). Only numpy is needed: this runs inside the serving image.

PSI reads as usual: under 0.1 stable, 0.1-0.2 moderate, over 0.2 a real shift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelfleet.signature import ArrayDict, Arrays
from modelfleet.stats.profile import feature_columns

# A share of zero would make PSI infinite; empty bins count as this share instead.
_EPSILON = 1e-4


def psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), _EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), _EPSILON, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> float:
    """Largest distance between the two empirical distribution functions (0 = identical)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    cur = np.sort(np.asarray(values, dtype=np.float64))
    if ref.size == 0 or cur.size == 0:
        return 0.0
    grid = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, grid, side="right") / ref.size
    cdf_cur = np.searchsorted(cur, grid, side="right") / cur.size
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def numeric_drift(feature: Mapping[str, Any], values: np.ndarray[Any, Any]) -> dict[str, float]:
    """``{"psi": …, "ks": …}`` of numeric window values against a numeric feature profile."""
    clean = values[np.isfinite(values)]
    if clean.size == 0 or not feature.get("shares"):
        return {}
    edges = np.asarray(feature["edges"], dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, clean, side="right"), minlength=edges.size + 1)
    scores = {"psi": psi(np.asarray(feature["shares"]), counts / counts.sum())}
    if feature.get("sample"):
        scores["ks"] = ks_statistic(np.asarray(feature["sample"]), clean)
    return scores


def categorical_drift(feature: Mapping[str, Any], values: np.ndarray[Any, Any]) -> dict[str, float]:
    """``{"psi": …}`` of text window values against a categorical feature profile."""
    expected: Mapping[str, float] = feature.get("shares") or {}
    if values.size == 0 or not expected:
        return {}
    labels, counts = np.unique(values.astype(str), return_counts=True)
    seen = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    actual = [seen.pop(c, 0) for c in expected]
    actual.append(sum(seen.values()))  # one extra bin: whatever training never saw
    want = [expected[c] for c in expected] + [0.0]
    return {"psi": psi(np.asarray(want), np.asarray(actual, dtype=np.float64) / values.size)}


def drift_scores(profile: Mapping[str, Any], window: Arrays) -> dict[tuple[str, str], float]:
    """``{(feature, method): score}`` for every profiled feature present in the window."""
    features: Mapping[str, Any] = profile.get("features") or {}
    scores: dict[tuple[str, str], float] = {}
    for name, values in feature_columns(window):
        feature = features.get(name)
        if feature is None:
            continue
        if feature.get("kind") == "numeric" and values.dtype.kind in "fiub":
            found = numeric_drift(feature, values.astype(np.float64))
        elif feature.get("kind") == "categorical":
            found = categorical_drift(feature, values)
        else:
            found = {}
        for method, score in found.items():
            scores[(name, method)] = score
    return scores


class DriftWindow:
    """The last ``capacity`` rows of every input, kept in preallocated ring buffers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rings: ArrayDict = {}
        self._next = 0
        self.rows = 0  # rows currently held (at most capacity)
        self.seen = 0  # rows ever added

    def add(self, inputs: Arrays) -> None:
        """Append a request's rows (every input must have the same number of rows)."""
        first = next(iter(inputs.values()), None)
        if first is None or first.ndim == 0:
            return
        n = int(first.shape[0])
        if n == 0:
            return
        if n > self.capacity:  # only the newest rows can stay
            inputs = {k: v[-self.capacity :] for k, v in inputs.items()}
            n = self.capacity
        for name, array in inputs.items():
            ring = self._rings.get(name)
            if ring is None or ring.shape[1:] != array.shape[1:] or ring.dtype != array.dtype:
                ring = self._rings[name] = np.empty(
                    (self.capacity, *array.shape[1:]), dtype=array.dtype
                )
                self._next, self.rows = 0, 0
            end = self._next + n
            if end <= self.capacity:
                ring[self._next : end] = array
            else:
                split = self.capacity - self._next
                ring[self._next :] = array[:split]
                ring[: n - split] = array[split:]
        self._next = (self._next + n) % self.capacity
        self.rows = min(self.capacity, self.rows + n)
        self.seen += n

    def arrays(self) -> ArrayDict:
        """The rows held now (order does not matter for the statistics)."""
        return {name: ring[: self.rows] for name, ring in self._rings.items()}

    def clear(self) -> None:
        """Forget every row (after a hot swap to a version with another profile)."""
        self._rings.clear()
        self._next, self.rows = 0, 0
