"""Registry commands as users see them: JSON documents that round-trip, sha256 on disk,
immutable versions, stage history, and bad input that is refused and changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from modelfleet.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_QUANTIZE__LATENCY_RUNS", "3")
    monkeypatch.setenv("COLUMNS", "200")  # tables wide enough to read cells whole
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich may wrap the error line on a narrow stderr


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)  # stdout holds the document and nothing else


def test_register_json_describes_the_stored_files_by_their_sha256(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registered = run_json(
        capsys, "register", str(onnx_file), "--name", "adder", "--task", "regression"
    )
    assert (registered["name"], registered["version"], registered["task"]) == (
        "adder",
        1,
        "regression",
    )
    assert registered["lineage"]["source_uri"] == str(onnx_file.resolve())
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    listed = run_json(capsys, "artifacts", "adder:1")
    assert listed == registered["artifacts"]
    source = next(a for a in listed if a["role"] == "source")
    assert source["sha256"] == digest
    assert source["size"] == onnx_file.stat().st_size
    stored = Path(source["uri"])
    assert stored.is_relative_to(home)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert run_json(capsys, "show", "adder") == registered


def test_versions_are_gap_free_and_a_registered_version_never_changes(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_json(capsys, "register", str(onnx_file), "-n", "adder", "--metric", "mae=0.5")
    second = run_json(capsys, "register", str(onnx_file), "-n", "adder", "--metric", "mae=0.25")
    assert (first["version"], second["version"]) == (1, 2)
    event = run_json(capsys, "promote", "adder:2", "--to", "PROD", "--reason", "better mae")
    assert (event["stage"], event["version"], event["previous_version"]) == ("prod", 2, None)
    assert run_json(capsys, "show", "adder:1") == first  # untouched by v2 and its promotion
    assert [v["metrics"] for v in run_json(capsys, "versions", "adder")] == [
        {"mae": 0.5},
        {"mae": 0.25},
    ]
    assert run_json(capsys, "show", "adder@prod")["version"] == 2
    [summary] = run_json(capsys, "models")
    assert (summary["latest_version"], summary["versions"], summary["stages"]) == (
        2,
        2,
        {"prod": 2},
    )
    code, out, _ = run(capsys, "versions", "adder")
    assert code == 0 and "mae=0.5" in out and "mae=0.25" in out and "prod" in out


def test_history_records_who_replaced_whom_in_order(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        run_json(capsys, "register", str(onnx_file), "-n", "adder", "--metric", "accuracy=0.95")
    run_json(capsys, "promote", "adder:1", "--to", "qa")
    code, out, err = run(capsys, "promote", "adder:2", "--to", "qa", "--reason", "retrained")
    assert code == 0, err
    assert "adder@qa -> adder:2 (was adder:1)" in out
    events = run_json(capsys, "history", "adder")
    assert [(e["stage"], e["version"], e["previous_version"]) for e in events] == [
        ("qa", 1, None),
        ("qa", 2, 1),
    ]
    assert events[1]["reason"] == "retrained"
    code, out, _ = run(capsys, "history", "adder")
    assert code == 0 and "retrained" in out


def test_a_refused_promotion_leaves_the_stage_where_it_was(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(capsys, "register", str(onnx_file), "-n", "adder", "--metric", "accuracy=0.8")
    run_json(capsys, "register", str(onnx_file), "-n", "adder", "--metric", "accuracy=0.7")
    run_json(capsys, "promote", "adder:1", "--to", "prod")
    code, out, err = run(
        capsys, "promote", "adder:2", "--to", "prod", "--require", "accuracy>=0.75"
    )
    assert (code, out) == (1, "")
    assert "promotion of adder:2 to prod refused" in err
    assert "change --require" in err
    code, _, err = run(capsys, "promote", "adder:2", "--to", "prod", "--require", "accuracy~1")
    assert code == 1 and "invalid requirement 'accuracy~1'" in err and "accuracy>=0.9" in err
    assert run_json(capsys, "show", "adder@prod")["version"] == 1
    assert len(run_json(capsys, "history", "adder")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "adder:0"], "the version must be a positive integer"),
        (["show", "adder:1@qa"], "give either ':version' or '@stage', not both"),
        (["show", "adder@staging"], "one of dev, qa, uat, prod"),
        (["show", "adder:7"], "model 'adder:7' not found (known: versions 1)"),
        (["show", "addr"], "did you mean adder?"),
        (["artifacts", "ghost"], "model 'ghost' not found; run 'modelfleet models'"),
        (["versions", "ghost"], "model 'ghost' not found"),
        (["history", "ghost"], "model 'ghost' not found"),
        (["show", "adder@prod"], "no version of adder is in prod"),
        (["promote", "adder:1", "--to", "live"], "'live'"),
        (["promote", "adder:1", "--to", "live"], "one of dev, qa, uat, prod"),
        (["promote", "ghost:1", "--to", "qa"], "model 'ghost' not found"),
    ],
)
def test_bad_references_name_the_problem_and_the_fix(
    home: Path,
    onnx_file: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    run_json(capsys, "register", str(onnx_file), "-n", "adder")
    code, out, err = run(capsys, *args)
    assert (code, out) == (1, "")
    assert err.startswith("error:")
    assert message in err
    assert "Traceback" not in err
    assert run_json(capsys, "history", "adder") == []


def test_bad_register_input_is_refused_and_writes_nothing(
    home: Path, onnx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = str(onnx_file)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    attempts = [
        (["register", onnx, "-n", "a b"], "invalid model reference 'a b'"),
        (["register", onnx, "-n", "adder", "--metric", "acc=high"], "must be a number"),
        (["register", onnx, "-n", "adder", "--metric", "=1"], "invalid metric '=1'"),
        (["register", onnx, "-n", "adder", "--tag", "team"], "write --tag key=value"),
        (["register", onnx, "-n", "adder", "--param", "=x"], "invalid param '=x'"),
        (["register", str(tmp_path / "gone.onnx"), "-n", "adder"], "does not exist"),
        (["register", onnx, "-n", "adder", "--sample", str(tmp_path / "no.npy")], "no.npy"),
        (["register", onnx, "-n", "adder", "--training-data", str(tmp_path / "t.csv")], "t.csv"),
    ]
    for args, message in attempts:
        code, out, err = run(capsys, *args)
        assert (code, out) == (1, ""), args
        assert message in err, (args, err)
    code, _, err = run(capsys, "register", str(broken), "-n", "adder")
    assert code == 1 and "Traceback" not in err
    assert run_json(capsys, "models") == []
    artifacts = home / "artifacts"
    assert not artifacts.exists() or not [p for p in artifacts.rglob("*") if p.is_file()]
    code, out, _ = run(capsys, "models")
    assert code == 0 and "no models registered yet" in out
