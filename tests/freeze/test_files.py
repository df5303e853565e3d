"""Model files: safe formats load, pickles need trust, broken files get clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import pytest
import skops.io as sio

import modelfleet as mf
from modelfleet.registry import Registry
from tests.models import iris, logistic_pipeline, sum_graph


def test_onnx_file_registers_with_its_graph_signature(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "sum.onnx"
    path.write_bytes(sum_graph(4).SerializeToString())
    version = mf.register_file(path, name="sum", registry=registry)
    assert version.signature.describe() == "(X: float32[?, 4]) -> (Y: float32[?, 1])"
    assert version.lineage.source_uri == str(path.resolve())
    assert (version.verification or {})["method"] == "onnx-checker"


def test_corrupt_onnx_file_is_refused(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not protobuf" * 10)
    with pytest.raises(mf.FreezeError, match=r"broken.onnx"):
        mf.register_file(path, name="broken", registry=registry)
    assert registry.models() == []


def test_invalid_onnx_graph_fails_the_checker(tmp_path: Path, registry: Registry) -> None:
    graph = sum_graph()
    graph.graph.node[0].input[0] = "nowhere"  # dangling input
    path = tmp_path / "dangling.onnx"
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(mf.FreezeError, match="fails the ONNX checker"):
        mf.register_file(path, name="dangling", registry=registry)
    assert registry.models() == []


def test_skops_file_registers(tmp_path: Path, registry: Registry) -> None:
    model, X, _ = logistic_pipeline()
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    version = mf.register_file(path, name="iris", sample_input=X[:20], registry=registry)
    assert version.framework == "sklearn"
    assert registry.read_artifact(version, "source") == path.read_bytes()


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_pickles_are_refused_without_trust(suffix: str, tmp_path: Path, registry: Registry) -> None:
    model, X, _ = logistic_pipeline()
    path = tmp_path / f"model{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps(model))
    else:
        joblib.dump(model, path)
    with pytest.raises(mf.UntrustedArtifactError, match=r"run arbitrary code.*--trust"):
        mf.register_file(path, name="iris", sample_input=X[:20], registry=registry)
    assert registry.models() == []
    version = mf.register_file(
        path, name="iris", sample_input=X[:20], trust=True, registry=registry
    )
    # The trusted pickle is stored as skops, never as a pickle.
    assert version.artifact("source").media_type == "application/vnd.skops"


def test_missing_and_unsupported_files(tmp_path: Path, registry: Registry) -> None:
    with pytest.raises(mf.ModelfleetError, match="does not exist"):
        mf.register_file(tmp_path / "nope.onnx", name="x", registry=registry)
    other = tmp_path / "model.h5"
    other.write_bytes(b"HDF")
    with pytest.raises(mf.ModelfleetError, match=r"unsupported model file model\.h5.*\.skops"):
        mf.register_file(other, name="x", registry=registry)
    with pytest.raises(mf.ModelfleetError, match="not a file"):
        mf.register_file(tmp_path, name="x", registry=registry)
    assert registry.models() == []


def test_skops_with_untrusted_types_needs_trust(tmp_path: Path, registry: Registry) -> None:
    from sklearn.preprocessing import FunctionTransformer

    X, _ = iris()
    model = FunctionTransformer(func=_double).fit(X)
    path = tmp_path / "custom.skops"
    sio.dump(model, path)
    with pytest.raises(mf.UntrustedArtifactError, match="_double"):
        mf.register_file(path, name="custom", sample_input=X, freeze=False, registry=registry)
    assert registry.models() == []


def _double(X: object) -> object:
    return X
