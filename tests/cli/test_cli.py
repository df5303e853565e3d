"""The modelfleet command: tables for people, JSON for scripts, one-line errors, exit codes."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli.runner import run
from tests.models import iris, logistic_pipeline


def test_register_list_show_and_json(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "register",
        str(onnx_file),
        "--name",
        "adder",
        "--metric",
        "mae=0.25",
        "--tag",
        "team=risk",
        "--param",
        "k=3",
    )
    assert code == 0
    assert "registered adder:1" in out
    code, out, _ = run(capsys, "models", "--json")
    assert json.loads(out)[0]["name"] == "adder"
    code, out, _ = run(capsys, "versions", "adder")
    assert code == 0 and "onnx" in out and "mae=0.25" in out
    code, out, _ = run(capsys, "show", "adder:1", "--json")
    shown = json.loads(out)
    assert shown["metrics"] == {"mae": 0.25}
    assert shown["tags"] == {"team": "risk"}
    assert shown["params"] == {"k": "3"}
    code, out, _ = run(capsys, "show", "adder")
    assert "X: float32[?, 3]" in out
    code, out, _ = run(capsys, "artifacts", "adder:1", "--json")
    assert {a["role"] for a in json.loads(out)} == {"source", "onnx"}


def test_promote_and_history(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "register", str(onnx_file), "--name", "adder", "--metric", "accuracy=0.95")
    code, out, _ = run(
        capsys,
        "promote",
        "adder:1",
        "--to",
        "qa",
        "--require",
        "accuracy>=0.9",
        "--reason",
        "passed eval",
    )
    assert code == 0 and "adder@qa -> adder:1" in out
    code, out, err = run(
        capsys, "promote", "adder:1", "--to", "prod", "--require", "accuracy>=0.99"
    )
    assert code == 1
    assert "promotion of adder:1 to prod refused" in err
    code, out, _ = run(capsys, "history", "adder", "--json")
    events = json.loads(out)
    assert [(e["stage"], e["reason"]) for e in events] == [("qa", "passed eval")]
    code, out, _ = run(capsys, "show", "adder@qa", "--json")
    assert json.loads(out)["version"] == 1


def test_user_errors_are_one_line_with_exit_code_1(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "show", "ghost:1")
    assert code == 1
    assert "model 'ghost' not found" in err
    assert "Traceback" not in err
    model, _X, _ = logistic_pipeline()
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(model))
    code, _, err = run(capsys, "register", str(pkl), "--name", "iris")
    assert code == 1 and "--trust" in err
    code, _, err = run(capsys, "register", str(tmp_path / "missing.onnx"), "--name", "x")
    assert code == 1 and "does not exist" in err
    code, _, err = run(capsys, "register", str(pkl), "--name", "x", "--metric", "oops")
    assert code == 1 and "invalid metric 'oops'" in err
    code, out, _ = run(capsys, "models")
    assert "no models registered yet" in out


def test_usage_errors_exit_2(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "register", str(onnx_file))
    assert code == 2
    assert "--name" in err
    code, _, _ = run(capsys, "no-such-command")
    assert code == 2


def test_register_sklearn_file_with_sample_then_quantize(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.neural_network import MLPClassifier

    X, y = iris()
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0).fit(X, y)
    pkl = tmp_path / "mlp.pkl"
    pkl.write_bytes(pickle.dumps(model))
    sample = tmp_path / "sample.npy"
    np.save(sample, X[:40])
    evalset = tmp_path / "eval.npz"
    np.savez(evalset, X=X, y=y)
    code, out, err = run(
        capsys,
        "register",
        str(pkl),
        "--name",
        "mlp",
        "--trust",
        "--sample",
        str(sample),
        "--training-data",
        str(evalset),
    )
    assert code == 0, err
    code, out, err = run(capsys, "quantize", "mlp:1", "--to", "int8", "--eval", str(evalset))
    assert code == 0, err
    assert "created mlp:2" in out
    assert "accuracy" in out and "before (fp32)" in out
    code, out, _ = run(capsys, "show", "mlp:2", "--json")
    assert json.loads(out)["lineage"]["parent_version"] == 1


def test_console_script_runs_without_traceback(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet", "show", "ghost"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert "Traceback" not in result.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "modelfleet", "--debug", "show", "ghost"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert "Traceback" in debug.stderr
