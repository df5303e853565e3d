"""Numerical verification of a frozen graph against its source model, and the metrics of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import FreezeError, QuantizeError, VerificationError
from modelfleet.registry import Task


def _is_numeric_float(array: np.ndarray[Any, Any]) -> bool:
    return bool(array.dtype.kind == "f")


def labels_of(outputs: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Predicted labels: the first non-float output, else the argmax of the first float one."""
    for out in outputs:
        if not _is_numeric_float(out):
            return out.reshape(out.shape[0], -1)[:, 0] if out.ndim > 1 else out
    first = outputs[0]
    if first.ndim == 2 and first.shape[1] > 1:
        return np.asarray(first.argmax(axis=1))
    return np.asarray((first.reshape(first.shape[0], -1)[:, 0] > 0.5).astype(np.int64))


def _float_difference(
    source: np.ndarray[Any, Any], frozen: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], int]:
    """Element-wise absolute differences, and how many places are NaN on one side only.

    NaN on both sides at the same place, or the same infinity, is agreement (difference 0).
    A NaN on one side only has no numeric difference, so it is counted apart: ``nanmax``
    would drop it and pass a graph that returns NaN where the source returns a number.
    """
    a = source.astype(np.float64).ravel()
    b = frozen.astype(np.float64).ravel()
    a_nan, b_nan = np.isnan(a), np.isnan(b)
    same = (a == b) | (a_nan & b_nan)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN; those places are masked below
        diff = np.where(same | a_nan | b_nan, 0.0, np.abs(a - b))
    return diff, int(np.count_nonzero(a_nan != b_nan))


def compare_outputs(
    source: Sequence[np.ndarray[Any, Any]],
    frozen: Sequence[np.ndarray[Any, Any]],
    task: Task,
) -> dict[str, float]:
    """``max_abs_diff`` over float outputs and ``label_agreement`` for classifiers.

    ``nan_mismatches`` is added when some value is NaN in one output and a number in the other.
    """
    if len(source) != len(frozen):
        raise FreezeError(
            f"the source model returns {len(source)} outputs but the graph {len(frozen)}",
            hint="export the same outputs the source model computes",
        )
    figures: dict[str, float] = {"rows": float(frozen[0].shape[0]) if frozen[0].ndim else 1.0}
    max_diff, nan_mismatches = 0.0, 0
    for a, b in zip(source, frozen, strict=True):
        if a.size != b.size:
            raise FreezeError(
                f"output sizes differ: source {a.shape} vs graph {b.shape}",
                hint="check the exported outputs",
            )
        if _is_numeric_float(a) or _is_numeric_float(b):
            diff, mismatched = _float_difference(a, b)
            max_diff = max(max_diff, float(diff.max()) if diff.size else 0.0)
            nan_mismatches += mismatched
    figures["max_abs_diff"] = max_diff
    if nan_mismatches:
        # Only present when non-zero, so records of clean graphs keep their usual figures.
        figures["nan_mismatches"] = float(nan_mismatches)
    if task is Task.CLASSIFICATION:
        want, got = labels_of(source), labels_of(frozen)
        figures["label_agreement"] = float(
            np.mean(want.astype(str).ravel() == got.astype(str).ravel())
        )
    return figures


def check_figures(figures: dict[str, float], settings: FreezeSettings) -> None:
    """Raise :class:`VerificationError` when the figures break the tolerance."""
    limits = {"max_abs_diff": settings.atol}
    # Written as "not within" so a NaN figure (from a caller's own comparison) is refused.
    broken = not figures["max_abs_diff"] <= settings.atol
    if figures.get("nan_mismatches", 0.0) != 0.0:
        limits["nan_mismatches"] = 0.0
        broken = True
    if "label_agreement" in figures:
        limits["label_agreement"] = settings.min_agreement
        broken = broken or figures["label_agreement"] < settings.min_agreement
    if broken:
        shown = {k: v for k, v in figures.items() if k in limits}
        raise VerificationError(shown, limits)


def _check_label_count(predicted: int, labels: int, what: str) -> None:
    # Both sides are flattened to compare them value by value; different sizes would otherwise
    # surface as numpy's broadcasting error.
    if predicted != labels:
        raise QuantizeError(
            f"the graph gives {predicted} {what} but the evaluation data has {labels} labels",
            hint=(
                "give labels shaped like the graph's first output (one column per output "
                "column), or evaluate without labels"
            ),
        )


def score(
    task: Task,
    outputs: Sequence[np.ndarray[Any, Any]],
    labels: np.ndarray[Any, Any] | None,
    reference: Sequence[np.ndarray[Any, Any]],
) -> tuple[str, float]:
    """The metric quantization is judged by, with its value.

    With true labels: ``accuracy`` for classifiers and ``r2`` for regressors. Without them:
    ``agreement`` with the reference (fp32) labels for classifiers, and ``fidelity``
    (1 - relative mean absolute error against the reference) otherwise.
    """
    if labels is not None and task is Task.CLASSIFICATION:
        got = labels_of(outputs).astype(str).ravel()
        want = np.asarray(labels).astype(str).ravel()
        _check_label_count(got.size, want.size, "predicted labels")
        return "accuracy", float(np.mean(got == want))
    if labels is not None and task is Task.REGRESSION:
        pred = outputs[0].astype(np.float64).ravel()
        truth = np.asarray(labels, dtype=np.float64).ravel()
        _check_label_count(pred.size, truth.size, "values in its first output")
        total = float(np.sum((truth - truth.mean()) ** 2)) or 1.0
        return "r2", 1.0 - float(np.sum((truth - pred) ** 2)) / total
    if task is Task.CLASSIFICATION:
        got, want = labels_of(outputs), labels_of(reference)
        return "agreement", float(np.mean(got.astype(str).ravel() == want.astype(str).ravel()))
    pred = np.concatenate([o.astype(np.float64).ravel() for o in outputs if o.dtype.kind == "f"])
    ref = np.concatenate([o.astype(np.float64).ravel() for o in reference if o.dtype.kind == "f"])
    scale = float(np.mean(np.abs(ref))) or 1.0
    return "fidelity", max(0.0, 1.0 - float(np.mean(np.abs(pred - ref))) / scale)
