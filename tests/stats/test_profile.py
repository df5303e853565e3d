"""The training profile: what a version remembers of its inputs for drift checks later."""

from __future__ import annotations

import json

import numpy as np

from modelfleet.stats import build_profile, feature_columns


def test_matrix_columns_are_named_by_index_and_vectors_by_input() -> None:
    arrays = {
        "input": np.arange(12, dtype=np.float32).reshape(4, 3),
        "age": np.array([30, 40, 50, 60]),
        "flag": np.ones((4, 1)),
    }
    names = [name for name, _ in feature_columns(arrays)]
    assert names == ["input[0]", "input[1]", "input[2]", "age", "flag"]
    columns = dict(feature_columns(arrays))
    np.testing.assert_array_equal(columns["input[1]"], [1, 4, 7, 10])


def test_numeric_feature_keeps_decile_shares_and_a_sorted_sample() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(5000, 1)).astype(np.float32)
    feature = build_profile({"x": values})["features"]["x"]
    assert feature["kind"] == "numeric"
    assert len(feature["edges"]) == 9  # ten bins, the outer two open-ended
    assert np.isclose(sum(feature["shares"]), 1.0)
    assert all(0.09 < share < 0.11 for share in feature["shares"])
    assert len(feature["sample"]) == 500
    assert feature["sample"] == sorted(feature["sample"])
    assert abs(feature["mean"]) < 0.1
    assert abs(feature["std"] - 1) < 0.1


def test_non_finite_values_are_left_out_and_an_all_nan_column_is_empty() -> None:
    x = np.array([1.0, np.nan, 2.0, np.inf, 3.0])
    profile = build_profile({"x": x, "gone": np.full(5, np.nan)})
    assert profile["features"]["x"]["count"] == 3
    assert profile["features"]["gone"] == {
        "kind": "numeric",
        "edges": [],
        "shares": [],
        "sample": [],
        "count": 0,
    }


def test_text_features_and_labels_keep_category_shares() -> None:
    plan = np.array(["basic", "pro", "basic", "basic"], dtype=object)
    profile = build_profile({"plan": plan}, labels=[0, 1, 1, 1])
    assert profile["features"]["plan"]["shares"] == {"basic": 0.75, "pro": 0.25}
    assert profile["labels"]["shares"] == {"0": 0.25, "1": 0.75}
    assert profile["rows"] == 4


def test_profile_is_plain_json_and_reproducible_for_a_seed() -> None:
    x = np.random.default_rng(3).normal(size=(2000, 2))
    first = json.dumps(build_profile({"x": x}, seed=7))
    assert first == json.dumps(build_profile({"x": x}, seed=7))
    assert first != json.dumps(build_profile({"x": x}, seed=8))  # another sample drawn
