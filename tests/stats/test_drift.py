"""Drift scores: PSI and Kolmogorov-Smirnov of live inputs against the training profile."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from modelfleet.stats import DriftWindow, build_profile, drift_scores, ks_statistic, psi


def test_psi_is_zero_for_equal_shares_and_matches_its_formula() -> None:
    assert psi(np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5])) == pytest.approx(0.0)
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(expected)


def test_psi_stays_finite_when_a_bin_is_empty() -> None:
    score = psi(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]))
    assert math.isfinite(score)
    assert score > 1


def test_ks_statistic_agrees_with_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=700), rng.normal(0.3, 1.2, size=300)
    assert ks_statistic(a, b) == pytest.approx(scipy_stats.ks_2samp(a, b).statistic)
    assert ks_statistic(a, np.array([])) == 0.0


@pytest.fixture(scope="module")
def profile() -> dict[str, object]:
    rng = np.random.default_rng(42)
    return build_profile(
        {
            "x": rng.normal(size=(20_000, 2)).astype(np.float32),
            "plan": rng.choice(["basic", "pro"], size=20_000, p=[0.8, 0.2]).astype(object),
        }
    )


def test_same_distribution_reads_as_stable(profile: dict[str, object]) -> None:
    rng = np.random.default_rng(7)
    window = {
        "x": rng.normal(size=(2000, 2)).astype(np.float32),
        "plan": rng.choice(["basic", "pro"], size=2000, p=[0.8, 0.2]).astype(object),
    }
    scores = drift_scores(profile, window)
    assert set(scores) == {
        ("x[0]", "psi"),
        ("x[0]", "ks"),
        ("x[1]", "psi"),
        ("x[1]", "ks"),
        ("plan", "psi"),
    }
    assert all(score < 0.1 for score in scores.values())


def test_a_shifted_column_and_unseen_categories_read_as_drift(profile: dict[str, object]) -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2000, 2)).astype(np.float32)
    x[:, 1] += 1.0  # one standard deviation: a real shift
    plan = np.array(["enterprise"] * 1000 + ["basic"] * 1000, dtype=object)
    scores = drift_scores(profile, {"x": x, "plan": plan})
    assert scores[("x[0]", "psi")] < 0.1
    assert scores[("x[1]", "psi")] > 0.2
    assert scores[("x[1]", "ks")] > 0.3
    assert scores[("plan", "psi")] > 0.2


def test_inputs_the_profile_does_not_know_are_ignored(profile: dict[str, object]) -> None:
    assert drift_scores(profile, {"other": np.ones((10, 3))}) == {}
    assert drift_scores({}, {"x": np.ones((10, 2))}) == {}


def test_window_keeps_only_the_newest_rows() -> None:
    window = DriftWindow(capacity=5)
    window.add({"x": np.arange(3.0).reshape(3, 1)})
    window.add({"x": np.arange(3.0, 7.0).reshape(4, 1)})
    assert window.rows == 5
    assert window.seen == 7
    assert sorted(window.arrays()["x"][:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    window.add({"x": np.arange(100.0, 120.0).reshape(20, 1)})  # larger than the window
    assert sorted(window.arrays()["x"][:, 0].tolist()) == [115.0, 116.0, 117.0, 118.0, 119.0]


def test_window_starts_over_when_the_input_shape_changes_and_on_clear() -> None:
    window = DriftWindow(capacity=4)
    window.add({"x": np.ones((3, 2))})
    window.add({"x": np.zeros((2, 5))})  # a hot swap to a model with other inputs
    assert window.arrays()["x"].shape == (2, 5)
    window.clear()
    assert window.rows == 0
    assert window.arrays() == {}
    window.add({"x": np.ones((0, 2))})  # an empty request adds nothing
    assert window.rows == 0
