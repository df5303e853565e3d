"""``register --training-data FILE`` stores the drift profile the server scores inputs against."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelfleet.config import load_settings
from modelfleet.registry import Registry
from tests.cli.runner import run

ROWS = 40


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_QUANTIZE__LATENCY_RUNS", "3")
    monkeypatch.setenv("COLUMNS", "400")
    return tmp_path / "home"


def stored_profile(ref: str) -> dict[str, object] | None:
    with Registry.open(load_settings()) as reg:
        data = reg.reference_profile(reg.get(ref))
    return None if data is None else dict(json.loads(data))


def features(rows: int = ROWS) -> np.ndarray[tuple[int, int], np.dtype[np.float32]]:
    return np.random.default_rng(7).normal(size=(rows, 3)).astype(np.float32)


def test_a_csv_with_labels_gives_a_profile_of_features_and_class_balance(
    home: Path, onnx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.csv"
    lines = ["a,b,c,label"] + [
        f"{a},{b},{c},{i % 2}" for i, (a, b, c) in enumerate(features().tolist())
    ]
    data.write_text("\n".join(lines) + "\n")
    code, out, err = run(
        capsys, "register", str(onnx_file), "--name", "adder", "--training-data", str(data)
    )
    assert code == 0, err
    assert "drift profile stored" in out
    code, out, _ = run(capsys, "artifacts", "adder:1", "--json")
    assert "profile" in {a["role"] for a in json.loads(out)}
    profile = stored_profile("adder:1")
    assert profile is not None
    assert profile["rows"] == ROWS
    assert len(profile["features"]) == 3  # type: ignore[arg-type]
    assert set(profile["labels"]["shares"]) == {"0", "1"}  # type: ignore[index]
    code, out, _ = run(capsys, "show", "adder:1", "--json")
    lineage = json.loads(out)["lineage"]
    assert lineage["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_an_npz_training_file_gives_a_profile(
    home: Path, onnx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.npz"
    np.savez(data, X=features(25))
    code, _, err = run(
        capsys, "register", str(onnx_file), "--name", "adder", "--training-data", str(data)
    )
    assert code == 0, err
    profile = stored_profile("adder:1")
    assert profile is not None and profile["rows"] == 25


def test_without_training_data_the_output_says_drift_is_not_monitored(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "register", str(onnx_file), "--name", "adder")
    assert code == 0
    assert "no drift profile" in out
    assert stored_profile("adder:1") is None


def test_training_data_that_does_not_fit_the_model_is_said_out_loud(
    home: Path, onnx_file: Path, tmp_path: Path
) -> None:
    data = tmp_path / "train.npy"
    np.save(data, features()[:, :2])  # the model takes 3 columns
    # A real process: the warning goes through the CLI's own logging set-up to stderr.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelfleet",
            "register",
            str(onnx_file),
            "--name",
            "adder",
            "--training-data",
            str(data),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no drift profile" in done.stdout
    assert "does not fit" in done.stderr
    assert stored_profile("adder:1") is None


def test_a_missing_training_file_is_refused_and_registers_nothing(
    home: Path, onnx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    code, out, err = run(
        capsys, "register", str(onnx_file), "--name", "adder", "--training-data", str(missing)
    )
    assert code == 1
    assert err.startswith("error: ") and str(missing) in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "models", "--json")
    assert json.loads(out) == []
