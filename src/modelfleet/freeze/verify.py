"""Numerical verification of a frozen graph against its source model, and the metrics of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import FreezeError, VerificationError
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


def compare_outputs(
    source: Sequence[np.ndarray[Any, Any]],
    frozen: Sequence[np.ndarray[Any, Any]],
    task: Task,
) -> dict[str, float]:
    """``max_abs_diff`` over float outputs and ``label_agreement`` for classifiers."""
    if len(source) != len(frozen):
        raise FreezeError(
            f"the source model returns {len(source)} outputs but the graph {len(frozen)}",
            hint="export the same outputs the source model computes",
        )
    figures: dict[str, float] = {"rows": float(frozen[0].shape[0]) if frozen[0].ndim else 1.0}
    max_diff = 0.0
    for a, b in zip(source, frozen, strict=True):
        if a.size != b.size:
            raise FreezeError(
                f"output sizes differ: source {a.shape} vs graph {b.shape}",
                hint="check the exported outputs",
            )
        if _is_numeric_float(a) or _is_numeric_float(b):
            diff = np.abs(a.astype(np.float64).ravel() - b.astype(np.float64).ravel())
            max_diff = max(max_diff, float(np.nanmax(diff)) if diff.size else 0.0)
    figures["max_abs_diff"] = max_diff
    if task is Task.CLASSIFICATION:
        want, got = labels_of(source), labels_of(frozen)
        figures["label_agreement"] = float(
            np.mean(want.astype(str).ravel() == got.astype(str).ravel())
        )
    return figures


def check_figures(figures: dict[str, float], settings: FreezeSettings) -> None:
    """Raise :class:`VerificationError` when the figures break the tolerance."""
    limits = {"max_abs_diff": settings.atol}
    broken = figures["max_abs_diff"] > settings.atol
    if "label_agreement" in figures:
        limits["label_agreement"] = settings.min_agreement
        broken = broken or figures["label_agreement"] < settings.min_agreement
    if broken:
        shown = {k: v for k, v in figures.items() if k in limits}
        raise VerificationError(shown, limits)


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
        return "accuracy", float(np.mean(got == np.asarray(labels).astype(str).ravel()))
    if labels is not None and task is Task.REGRESSION:
        pred = outputs[0].astype(np.float64).ravel()
        truth = np.asarray(labels, dtype=np.float64).ravel()
        total = float(np.sum((truth - truth.mean()) ** 2)) or 1.0
        return "r2", 1.0 - float(np.sum((truth - pred) ** 2)) / total
    if task is Task.CLASSIFICATION:
        got, want = labels_of(outputs), labels_of(reference)
        return "agreement", float(np.mean(got.astype(str).ravel() == want.astype(str).ravel()))
    pred = np.concatenate([o.astype(np.float64).ravel() for o in outputs if o.dtype.kind == "f"])
    ref = np.concatenate([o.astype(np.float64).ravel() for o in reference if o.dtype.kind == "f"])
    scale = float(np.mean(np.abs(ref))) or 1.0
    return "fidelity", max(0.0, 1.0 - float(np.mean(np.abs(pred - ref))) / scale)
