"""The one model every server in the serving benchmark is asked to serve.

A scikit-learn ``RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)``
fitted on ``make_classification(n_samples=20000, n_features=20, random_state=0)`` with the
features cast to float32, then frozen to ONNX by skl2onnx with the ZipMap post-processor
switched off. The graph has:

* input ``input``: float32 ``[None, 20]``
* output ``label``: int64 ``[None]``
* output ``probabilities``: float32 ``[None, 2]``

The operator sets are pinned (``ai.onnx`` 17, ``ai.onnx.ml`` 3) so the file does not drift
with the installed skl2onnx, and every onnxruntime in the peer virtualenvs can load it.

``build_model`` caches: when ``rf.onnx`` and its sidecar ``X.npy`` are both present in the
destination folder they are reused as they are. Both files are written through a temporary
name and renamed, and ``X.npy`` is written last, so a half-finished build is never reused.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

MODEL_FILE = "rf.onnx"
FEATURES_FILE = "X.npy"
N_SAMPLES = 20_000
N_FEATURES = 20
N_REQUEST_ROWS = 2_000
OPSETS = {"": 17, "ai.onnx.ml": 3}


def _atomic_write(dest: Path, payload: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _save_features(dest: Path, rows: np.ndarray) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, rows, allow_pickle=False)
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _check_onnx(onnx_bytes: bytes, rows: np.ndarray, expected_labels: np.ndarray) -> None:
    """Run the frozen graph once and make sure it agrees with the fitted forest."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    if names_in != ["input"] or names_out != ["label", "probabilities"]:
        raise RuntimeError(f"unexpected ONNX signature: inputs={names_in} outputs={names_out}")
    labels, probabilities = session.run(None, {"input": rows})
    if labels.dtype != np.int64 or probabilities.dtype != np.float32:
        raise RuntimeError(f"unexpected output dtypes: {labels.dtype}, {probabilities.dtype}")
    if probabilities.shape != (rows.shape[0], 2):
        raise RuntimeError(f"unexpected probabilities shape {probabilities.shape}")
    mismatches = int(np.count_nonzero(labels != expected_labels))
    if mismatches:
        raise RuntimeError(f"ONNX labels differ from scikit-learn on {mismatches} rows")


def build_model(dest_dir: Path) -> tuple[Path, np.ndarray]:
    """Train (or reuse) the benchmark forest and return ``(path to rf.onnx, request rows)``.

    The returned matrix is float32 with shape ``(2000, 20)``: the first 2000 rows of the
    generated data set, for use in request bodies. The result is the same on every call.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    model_path = dest_dir / MODEL_FILE
    features_path = dest_dir / FEATURES_FILE
    if model_path.is_file() and features_path.is_file():
        rows = np.load(features_path, allow_pickle=False)
        return model_path, np.ascontiguousarray(rows, dtype=np.float32)

    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    features, target = make_classification(
        n_samples=N_SAMPLES, n_features=N_FEATURES, random_state=0
    )
    features = features.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)
    forest.fit(features, target)

    onnx_model = to_onnx(
        forest,
        initial_types=[("input", _float_tensor_type([None, N_FEATURES]))],
        options={id(forest): {"zipmap": False}},
        target_opset=OPSETS,
    )
    onnx_bytes = onnx_model.SerializeToString()
    rows = np.ascontiguousarray(features[:N_REQUEST_ROWS], dtype=np.float32)
    _check_onnx(onnx_bytes, rows, forest.predict(rows))

    _atomic_write(model_path, onnx_bytes)
    _save_features(features_path, rows)
    return model_path, rows


def _float_tensor_type(shape: list[int | None]) -> object:
    from skl2onnx.common.data_types import FloatTensorType

    return FloatTensorType(shape)


if __name__ == "__main__":
    import sys

    target_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / ".cache"
    path, request_rows = build_model(target_dir)
    print(f"{path} ({path.stat().st_size} bytes), request rows {request_rows.shape}")
