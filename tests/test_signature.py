"""Signatures: inferred from samples, enforced on inputs with clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelfleet import Signature, SignatureError, TensorSpec
from modelfleet.datasets import decode_sample, encode_sample
from modelfleet.signature import infer_signature, prepare_inputs

TABLE = Signature(
    inputs=(
        TensorSpec(name="age", dtype="int64", shape=(None, 1)),
        TensorSpec(name="income", dtype="float32", shape=(None, 1)),
        TensorSpec(name="plan", dtype="string", shape=(None, 1)),
    )
)
MATRIX = Signature(inputs=(TensorSpec(name="input", dtype="float32", shape=(None, 4)),))


def test_infer_from_array_dataframe_and_mapping() -> None:
    assert infer_signature(np.zeros((5, 4))).inputs[0].describe() == "input: float64[?, 4]"
    assert infer_signature(np.zeros((5, 4)), float32=True).inputs[0].dtype == "float32"
    frame = pd.DataFrame({"age": [30, 40], "income": [1.5, 2.5], "plan": ["a", "b"]})
    assert infer_signature(frame) == TABLE
    mapping = infer_signature({"ids": np.array([[1, 2]], dtype=np.int32)})
    assert mapping.inputs[0].describe() == "ids: int32[?, 2]"


def test_prepare_casts_and_adds_a_missing_batch_axis() -> None:
    arrays = prepare_inputs(MATRIX, [1, 2, 3, 4])
    assert arrays["input"].shape == (1, 4)
    assert arrays["input"].dtype == np.float32
    split = prepare_inputs(TABLE, np.array([[30, 1.5, "a"]], dtype=object))
    assert split["plan"].tolist() == [["a"]]
    assert split["age"].dtype == np.int64


@pytest.mark.parametrize(
    ("signature", "data", "message"),
    [
        (MATRIX, np.zeros((2, 3)), r"shape \[2, 3\], expected input: float32\[\?, 4\]"),
        (MATRIX, [["a", "b", "c", "d"]], "must be float32, got text"),
        (TABLE, {"age": [[1]], "income": [[1.0]]}, r"missing inputs \['plan'\]"),
        (TABLE, {"age": [[1]], "income": [[1.0]], "plan": [["a"]], "x": [[0]]}, "unknown inputs"),
        (TABLE, {"age": [[1.5]], "income": [[1.0]], "plan": [["a"]]}, "got fractions"),
        (TABLE, {"age": [[1]], "income": [[1.0]], "plan": [[3]]}, "must be text"),
        (TABLE, {"age": [[1], [2]], "income": [[1.0]], "plan": [["a"]]}, "different numbers"),
        (TABLE, np.zeros((2, 2)), "table of 3 columns"),
    ],
)
def test_bad_inputs_get_clear_errors(signature: Signature, data: object, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        prepare_inputs(signature, data)


def test_samples_round_trip_without_pickle() -> None:
    frame = pd.DataFrame({"age": [30, 40], "income": [1.5, 2.5], "plan": ["a", "b"]})
    back = decode_sample(encode_sample(frame))
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(decode_sample(encode_sample(array)), array)
    mapping = decode_sample(encode_sample({"a": np.ones((2, 1))}))
    assert set(mapping) == {"a"}


def test_empty_samples_are_refused() -> None:
    with pytest.raises(SignatureError, match="no rows"):
        infer_signature(np.zeros((0, 3)))
    with pytest.raises(SignatureError, match="empty"):
        infer_signature({})
