"""What the CLI prints is what was said: brackets in messages, names and paths survive."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.cli.runner import run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A home whose path holds brackets, as Windows-made or copied folders often do.
    home = tmp_path / "home [dev]"
    monkeypatch.setenv("MODELFLEET_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "400")
    return home


def test_an_error_naming_a_bracketed_reference_shows_it_whole(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "build", "churn[v2]", "--env", "qa", "--engine", "none")
    assert code == 1 and out == ""
    assert err.startswith("error: invalid model reference 'churn[v2]': ")
    assert len(err.strip().splitlines()) == 1


def test_a_message_that_looks_like_a_closing_tag_is_printed_not_raised(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Read as markup, '[/]' has nothing to close: rich raised and the user got a traceback.
    code, _, err = run(capsys, "show", "churn[/]:1")
    assert code == 1
    assert err.startswith("error: invalid model reference 'churn[/]': ")
    assert "Traceback" not in err


def test_the_extra_to_install_is_printed_with_its_brackets(
    home: Path,
    onnx_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("a,b,c\n1,2,3\n")
    monkeypatch.setitem(sys.modules, "pandas", None)  # an install without the train extra
    code, _, err = run(
        capsys, "register", str(onnx_file), "--name", "adder", "--sample", str(sample)
    )
    assert code == 1
    assert "run: pip install 'modelfleet[train]'" in err


def test_a_wrong_environment_is_not_called_a_model_reference(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "build", "churn", "--env", "staging", "--engine", "none")
    assert code == 1
    assert err.strip() == "error: unknown stage 'staging'; use one of dev, qa, uat, prod"
    code, _, err = run(capsys, "promote", "churn:1", "--to", "Staging")
    assert code == 1
    assert "unknown stage 'Staging'; use one of dev, qa, uat, prod" in err
    assert "model reference" not in err


def test_a_bad_stage_inside_a_reference_is_explained_as_part_of_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "show", "churn@staging")
    assert code == 1
    assert "invalid model reference 'churn@staging': unknown stage 'staging'" in err
    assert "dev, qa, uat, prod" in err


def test_tags_and_paths_with_brackets_print_as_given(
    home: Path, onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        capsys, "register", str(onnx_file), "--name", "adder", "--tag", "note=[red]draft[/]"
    )
    assert code == 0
    code, out, _ = run(capsys, "show", "adder:1")
    assert code == 0
    assert '"note": "[red]draft[/]"' in out
    assert "home [dev]" in out  # the artifacts table's URIs
    code, out, _ = run(capsys, "artifacts", "adder:1")
    assert code == 0
    assert out.count("home [dev]") == 2  # the source file's URI and the ONNX graph's


def test_a_job_error_and_params_with_brackets_print_as_given(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelfleet.config import load_settings
    from modelfleet.jobs import JobQueue, JobState

    pipeline = tmp_path / "p.py"
    pipeline.write_text("")
    queue = JobQueue(load_settings().db_url)
    job = queue.submit(str(pipeline), {"layers": [64, 32], "tag": "[bold]x"})
    queue.end_external(job.id, JobState.FAILED, "shape [/] mismatch in [red]layer 2")
    queue.close()
    code, out, err = run(capsys, "jobs", "show", str(job.id))
    assert code == 0, err
    assert "error: shape [/] mismatch in [red]layer 2" in out
    assert "'layers': [64, 32]" in out
    assert "'tag': '[bold]x'" in out
