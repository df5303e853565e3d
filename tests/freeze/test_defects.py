"""Edge cases a test pass found: fixed batch sizes, NaN outputs, damaged files, exact boundaries."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from onnx import TensorProto, helper

import modelfleet as mf
from modelfleet.config import FreezeSettings
from modelfleet.datasets import LabeledData
from modelfleet.freeze import Method, load_model_file, quantize_graph
from modelfleet.freeze.verify import check_figures, compare_outputs
from modelfleet.registry import Registry, Variant
from tests.models import logistic_pipeline, matmul_graph


def _relu_graph(shape: list[Any]) -> Any:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])],
        "relu",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# --- a fixed batch size ----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_file_with_a_fixed_batch_size_registers_timed_at_that_size(
    batch: int, tmp_path: Path, registry: Registry
) -> None:
    path = tmp_path / "static.onnx"
    path.write_bytes(_relu_graph([batch, 3]).SerializeToString())
    version = mf.register_file(path, name="static", registry=registry)
    assert version.signature.describe() == f"(X: float32[{batch}, 3]) -> (Y: float32[{batch}, 3])"
    latency = (version.verification or {})["latency"]
    assert set(latency) == {f"batch_{batch}_ms"}  # the sizes timed, and only those
    assert latency[f"batch_{batch}_ms"] > 0


def test_open_batch_axis_is_still_timed_at_1_and_64(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "open.onnx"
    path.write_bytes(_relu_graph(["batch", 3]).SerializeToString())
    version = mf.register_file(path, name="open", registry=registry)
    assert set((version.verification or {})["latency"]) == {"batch_1_ms", "batch_64_ms"}


def test_zero_size_axis_stays_fixed_in_the_signature(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(_relu_graph(["batch", 0]).SerializeToString())
    version = mf.register_file(path, name="empty", registry=registry)
    assert version.signature.describe() == "(X: float32[?, 0]) -> (Y: float32[?, 0])"


# --- NaN in verification ---------------------------------------------------------------------


def test_nan_where_the_source_has_a_number_is_refused_with_a_count() -> None:
    figures = compare_outputs(
        [np.array([[1.0], [2.0]])], [np.array([[1.0], [np.nan]], np.float32)], mf.Task.REGRESSION
    )
    assert figures["max_abs_diff"] == 0.0
    assert figures["nan_mismatches"] == 1
    with pytest.raises(mf.VerificationError) as info:
        check_figures(figures, FreezeSettings())
    assert info.value.figures == {"max_abs_diff": 0.0, "nan_mismatches": 1}
    assert "nan_mismatches=1" in str(info.value)
    assert "nan_mismatches: 0" in str(info.value)


def test_all_nan_graph_output_is_refused() -> None:
    figures = compare_outputs(
        [np.array([1.0, 2.0, 3.0])], [np.full(3, np.nan, np.float32)], mf.Task.REGRESSION
    )
    assert figures["nan_mismatches"] == 3
    with pytest.raises(mf.VerificationError):
        check_figures(figures, FreezeSettings())


def test_nan_in_the_source_only_is_refused_too() -> None:
    figures = compare_outputs(
        [np.array([np.nan, 2.0])], [np.array([0.0, 2.0], np.float32)], mf.Task.REGRESSION
    )
    with pytest.raises(mf.VerificationError):
        check_figures(figures, FreezeSettings())


def test_nan_and_infinity_at_the_same_place_on_both_sides_agree() -> None:
    figures = compare_outputs(
        [np.array([np.nan, np.inf, 1.0])],
        [np.array([np.nan, np.inf, 1.0], np.float32)],
        mf.Task.REGRESSION,
    )
    assert figures == {"rows": 3.0, "max_abs_diff": 0.0}
    check_figures(figures, FreezeSettings())


def test_a_nan_difference_figure_is_never_within_tolerance() -> None:
    with pytest.raises(mf.VerificationError):
        check_figures({"rows": 2.0, "max_abs_diff": float("nan")}, FreezeSettings())


# --- damaged files ---------------------------------------------------------------------------


@pytest.mark.parametrize("trust", [False, True])
def test_skops_zip_without_a_schema_is_a_clear_error(trust: bool, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    path = tmp_path / "model.skops"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(mf.FreezeError, match=r"model.skops: it is damaged or not a skops file"):
        load_model_file(path, trust=trust)


def test_truncated_trusted_pickle_is_a_clear_error(tmp_path: Path) -> None:
    model, _, _ = logistic_pipeline()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model)[:200])
    with pytest.raises(mf.FreezeError, match=r"model.pkl: it is damaged or not a pickle") as info:
        load_model_file(path, trust=True)
    assert info.value.hint is not None


def test_truncated_trusted_joblib_is_a_clear_error(tmp_path: Path, registry: Registry) -> None:
    model, X, _ = logistic_pipeline()
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(mf.FreezeError, match=r"model.joblib: it is damaged"):
        mf.register_file(path, name="iris", sample_input=X[:5], trust=True, registry=registry)
    assert registry.models() == []


@pytest.mark.torch
def test_garbage_trusted_pt_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(mf.FreezeError, match=r"model.pt: it is damaged or not a torch file"):
        load_model_file(path, trust=True)


@pytest.mark.torch
@pytest.mark.parametrize("trust", [False, True])
def test_truncated_torchscript_is_called_damaged_not_a_checkpoint(
    trust: bool, tmp_path: Path
) -> None:
    import torch

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 1))), buffer)
    path = tmp_path / "model.pt"
    path.write_bytes(buffer.getvalue()[:-40])
    with pytest.raises(mf.FreezeError, match=r"model.pt: it is a damaged or truncated torch"):
        load_model_file(path, trust=trust)


@pytest.mark.torch
def test_whole_checkpoint_is_still_refused_without_trust(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 1)), path)
    with pytest.raises(mf.UntrustedArtifactError, match="pickled checkpoint"):
        load_model_file(path)
    assert isinstance(load_model_file(path, trust=True).model, torch.nn.Module)


# --- the quantization gate at its boundary ---------------------------------------------------


def test_a_drop_of_exactly_max_drop_passes_the_gate() -> None:
    # fp16 clamps weights to +-10000, so only the last row's decision (0.5*5e4 vs 1.0*2e4)
    # flips: accuracy 1.0 -> 0.98, a drop of exactly 0.02 (1.0 - 0.98 is 0.0200...18 in floats).
    graph = matmul_graph([[5e4, 0.0], [0.0, 2e4]]).SerializeToString()
    X = np.array([[0.9, 0.1]] * 49 + [[0.5, 1.0]], dtype=np.float32)
    result = quantize_graph(
        graph,
        variant=Variant.FP16,
        method=Method.DYNAMIC,
        task=mf.Task.CLASSIFICATION,
        features={"X": X},
        labels=np.zeros(50, dtype=np.int64),
        latency_runs=3,
    )
    assert (result.metric, result.before, result.after) == ("accuracy", 1.0, 0.98)
    assert not result.exceeds(0.02)
    assert result.exceeds(0.019)


# --- scoring against labels of another shape -------------------------------------------------


def test_two_column_regressor_scored_against_one_label_per_row_is_a_clear_error(
    registry: Registry,
) -> None:
    graph = matmul_graph([[1.5, 0.5], [0.25, 2.0]])
    mf.register(graph, name="two", task="regression", registry=registry)
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    with pytest.raises(mf.QuantizeError, match=r"gives 40 values .* has 20 labels") as info:
        mf.quantize("two:1", to="fp16", eval_data=LabeledData(X, X[:, 0].copy()), registry=registry)
    assert "shaped like the graph's first output" in str(info.value)
    assert [v.version for v in registry.versions("two")] == [1]


def test_quantize_accepts_a_drop_of_exactly_max_drop(registry: Registry) -> None:
    # fp16 clamps weights above 1e4, so the last row's decision flips: 1 wrong row of 50.
    model = matmul_graph([[5e4, 0.0], [0.0, 2e4]])
    X = np.array([[0.9, 0.1]] * 49 + [[0.5, 1.0]], dtype=np.float32)
    y = np.zeros(50, dtype=np.int64)
    mf.register(model, name="edge", task="classification", registry=registry)
    child = mf.quantize(
        "edge:1", to="fp16", eval_data=LabeledData(X, y), max_drop=0.02, registry=registry
    )
    assert child.metrics["accuracy"] == 0.98
