"""Verification figures: how a frozen graph is compared with its source, and when it is refused."""

from __future__ import annotations

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.config import FreezeSettings
from modelfleet.freeze.verify import check_figures, compare_outputs, labels_of, score


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(-1, 1)


def test_largest_difference_over_every_float_output_is_reported() -> None:
    source = [np.array([0, 1, 1]), np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]])]
    frozen = [np.array([0, 1, 1]), np.array([[0.2, 0.8], [0.45, 0.6], [0.1, 0.9]], np.float32)]
    figures = compare_outputs(source, frozen, mf.Task.CLASSIFICATION)
    assert figures["rows"] == 3
    assert figures["max_abs_diff"] == pytest.approx(0.05, abs=1e-6)
    assert figures["label_agreement"] == 1.0


def test_label_agreement_is_the_share_of_equal_labels_whatever_their_type() -> None:
    source = [np.array(["cat", "dog", "dog", "cat"])]
    frozen = [np.array(["cat", "dog", "cat", "cat"], dtype=object)]
    figures = compare_outputs(source, frozen, mf.Task.CLASSIFICATION)
    assert figures["label_agreement"] == 0.75
    assert figures["max_abs_diff"] == 0.0  # no float output to compare
    # int64 labels from the source and int32 labels from a graph compare by value.
    same = compare_outputs(
        [np.array([2, 0, 1])], [np.array([2, 0, 1], np.int32)], mf.Task.CLASSIFICATION
    )
    assert same["label_agreement"] == 1.0


def test_regressors_get_no_label_agreement() -> None:
    figures = compare_outputs([_f32(1.0, 2.0)], [_f32(1.0, 2.5)], mf.Task.REGRESSION)
    assert set(figures) == {"rows", "max_abs_diff"}
    assert figures["max_abs_diff"] == 0.5


def test_output_count_and_size_mismatches_are_freeze_errors() -> None:
    with pytest.raises(mf.FreezeError, match="returns 2 outputs but the graph 1") as info:
        compare_outputs([_f32(1.0), _f32(2.0)], [_f32(1.0)], mf.Task.OTHER)
    assert info.value.hint == "export the same outputs the source model computes"
    with pytest.raises(mf.FreezeError, match=r"source \(3, 1\) vs graph \(3, 2\)"):
        compare_outputs([_f32(1, 2, 3)], [np.zeros((3, 2), np.float32)], mf.Task.OTHER)


def test_same_size_in_another_layout_is_compared_element_by_element() -> None:
    # [n] from the source and [n, 1] from the graph are the same predictions.
    figures = compare_outputs([np.array([1.0, 2.0])], [_f32(1.0, 2.0)], mf.Task.REGRESSION)
    assert figures["max_abs_diff"] == 0.0


def test_figures_within_tolerance_pass_and_the_limit_itself_is_allowed() -> None:
    settings = FreezeSettings(atol=1e-3, min_agreement=0.9)
    check_figures({"rows": 10, "max_abs_diff": 1e-3, "label_agreement": 0.9}, settings)
    check_figures({"rows": 10, "max_abs_diff": 0.0}, settings)


def test_difference_beyond_atol_is_refused_with_both_figures() -> None:
    settings = FreezeSettings(atol=1e-4)
    with pytest.raises(mf.VerificationError) as info:
        check_figures({"rows": 8, "max_abs_diff": 0.0123}, settings)
    error = info.value
    assert error.figures == {"max_abs_diff": 0.0123}
    assert error.limits == {"max_abs_diff": 1e-4}
    message = str(error)
    assert "ONNX graph differs from the source model: max_abs_diff=0.0123" in message
    assert "(allowed max_abs_diff: 0.0001)" in message
    assert "--atol/--min-agreement" in message


def test_label_disagreement_is_refused_even_when_numbers_are_close() -> None:
    settings = FreezeSettings(atol=1e-4, min_agreement=0.999)
    figures = compare_outputs(
        [np.array([0, 1, 1, 0]), _f32(0.1, 0.9, 0.6, 0.3)],
        [np.array([0, 1, 0, 0]), _f32(0.1, 0.9, 0.6, 0.3)],
        mf.Task.CLASSIFICATION,
    )
    with pytest.raises(mf.VerificationError) as info:
        check_figures(figures, settings)
    assert info.value.figures == {"max_abs_diff": 0.0, "label_agreement": 0.75}
    assert (
        "max_abs_diff=0, label_agreement=0.75 "
        "(allowed max_abs_diff: 0.0001, label_agreement: 0.999)" in str(info.value)
    )
    assert isinstance(info.value, mf.FreezeError)


def test_labels_come_from_the_first_label_output_else_from_scores() -> None:
    proba = np.array([[0.7, 0.3], [0.2, 0.8]], np.float32)
    assert labels_of([proba]).tolist() == [0, 1]
    assert labels_of([proba, np.array([["b"], ["a"]])]).tolist() == ["b", "a"]
    assert labels_of([_f32(0.2, 0.7, 0.5)]).tolist() == [0, 1, 0]  # one score: > 0.5


def test_metrics_quantization_is_judged_by() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    flipped = proba[:, ::-1].copy()
    labels = np.array([0, 1, 0, 0])
    assert score(mf.Task.CLASSIFICATION, [proba], labels, [proba]) == ("accuracy", 0.75)
    assert score(mf.Task.CLASSIFICATION, [flipped], None, [proba]) == ("agreement", 0.0)
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    assert score(mf.Task.REGRESSION, [_f32(1, 2, 3, 4)], truth, []) == ("r2", 1.0)
    assert score(mf.Task.REGRESSION, [_f32(2.5, 2.5, 2.5, 2.5)], truth, []) == ("r2", 0.0)
    # Without labels a regressor is judged by fidelity to the fp32 outputs, floored at 0.
    reference = [_f32(2.0, 4.0)]
    assert score(mf.Task.REGRESSION, [_f32(2.0, 4.0)], None, reference) == ("fidelity", 1.0)
    metric, value = score(mf.Task.REGRESSION, [_f32(2.3, 3.7)], None, reference)
    assert metric == "fidelity"
    assert value == pytest.approx(0.9, abs=1e-6)
    assert score(mf.Task.REGRESSION, [_f32(-20.0, 40.0)], None, reference) == ("fidelity", 0.0)
