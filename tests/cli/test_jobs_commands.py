"""The jobs, pipeline and worker commands as users see them: documents, notes, cancel."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.cli import main
from modelfleet.jobs import JobQueue

SLOW = Path(__file__).resolve().parents[1] / "jobs" / "pipelines" / "slow.py"

DOUBLER = """
from modelfleet.pipeline import Pipeline, step


@step
def double(n: int = 1) -> dict[str, int]:
    return {"twice": 2 * n}


pipeline = Pipeline(name="doubler", steps=[double])
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MODELFLEET_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "250")
    return home


@pytest.fixture
def queue(home: Path) -> Any:
    q = JobQueue(f"sqlite:///{home / 'registry.db'}")
    yield q
    q.close()


@pytest.fixture
def keep_sigterm() -> Iterator[None]:
    """``modelfleet worker`` installs a SIGTERM handler; give pytest its own back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_submit_json_holds_typed_params_and_the_resolved_pipeline(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(SLOW.parent)
    job = run_json(
        capsys,
        *("jobs", "submit", "slow.py", "--priority", "4", "--max-attempts", "5"),
        *("--param", "seconds=0.5", "--param", "fail=false", "--param", "marker=m.txt"),
    )
    assert job["pipeline"] == str(SLOW)  # absolute: a worker elsewhere finds it
    assert job["params"] == {"seconds": 0.5, "fail": False, "marker": "m.txt"}
    assert (job["state"], job["attempts"], job["max_attempts"], job["priority"]) == (
        "queued",
        0,
        5,
        4,
    )
    assert job["lease_owner"] is None and job["started_at"] is None
    assert run_json(capsys, "jobs", "show", str(job["id"])) == job
    code, out, _ = run(capsys, "jobs", "submit", "slow.py", "--gpus", "1")
    assert code == 0 and out.strip() == f"job {job['id'] + 1} queued (local, priority 0, 1 GPU)"


def test_list_is_newest_first_filters_by_state_and_explains_waiting(
    home: Path, queue: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [run_json(capsys, "jobs", "submit", str(SLOW))["id"] for _ in range(3)]
    assert [j["id"] for j in run_json(capsys, "jobs", "list")] == ids[::-1]
    assert [j["id"] for j in run_json(capsys, "jobs", "list", "--limit", "2")] == ids[:0:-1]
    run(capsys, "jobs", "cancel", str(ids[1]))
    assert [j["id"] for j in run_json(capsys, "jobs", "list", "--state", "cancelled")] == [ids[1]]
    assert [j["id"] for j in run_json(capsys, "jobs", "list", "--state", "queued")] == [
        ids[2],
        ids[0],
    ]
    code, out, _ = run(capsys, "jobs", "show", str(ids[0]))
    assert code == 0
    assert f"job {ids[0]}: queued after 0 attempt(s)" in out
    assert "none is running: start one with 'modelfleet worker'" in out
    queue.register_worker("small", gpus=0, cpus=0.5)
    code, out, _ = run(capsys, "jobs", "list")
    assert "waiting for a worker with 1 CPUs" in out
    assert "cancelled before it started" in out


def test_cancel_queued_then_running_and_twice(
    home: Path, queue: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_json(capsys, "jobs", "submit", str(SLOW))["id"]
    second = run_json(capsys, "jobs", "submit", str(SLOW))["id"]
    code, out, _ = run(capsys, "jobs", "cancel", str(first))
    assert (code, out.strip()) == (0, f"job {first}: cancelled")
    shown = run_json(capsys, "jobs", "show", str(first))
    assert (shown["state"], shown["error"]) == ("cancelled", "cancelled before it started")
    assert shown["finished_at"] is not None
    code, out, err = run(capsys, "jobs", "cancel", str(first))
    assert (code, out) == (1, "")
    assert f"job {first} already cancelled; nothing to cancel" in err
    claimed = queue.claim("w1", gpus=0, cpus=1, lease_s=60)
    assert claimed is not None and claimed.id == second
    code, out, _ = run(capsys, "jobs", "cancel", str(second))
    assert (code, out.strip()) == (0, f"job {second}: stopping (its worker will end it)")
    shown = run_json(capsys, "jobs", "show", str(second))
    assert (shown["state"], shown["cancel_requested"], shown["lease_owner"]) == (
        "running",
        True,
        "w1",
    )
    assert queue.heartbeat(second, "w1", 1, lease_s=60) is True  # the worker hears it


def test_logs_print_every_attempt_in_order(
    home: Path, queue: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job = run_json(capsys, "jobs", "submit", str(SLOW))["id"]
    queue.append_log(job, 1, "first try\n")
    queue.append_log(job, 2, "second try\n")
    queue.append_log(job, 2, "done\n")
    code, out, _ = run(capsys, "jobs", "logs", str(job))
    assert (code, out) == (0, "first try\nsecond try\ndone\n")


@pytest.mark.usefixtures("keep_sigterm")
def test_a_worker_run_shows_the_failure_in_jobs_show(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "worker", "--once", "--name", "idle")
    assert (code, out.strip()) == (0, "worker idle: 0 job(s) finished")
    job = run_json(
        capsys,
        *("jobs", "submit", str(SLOW), "--param", f"marker={tmp_path / 'm'}"),
        *("--param", "fail=true"),
    )["id"]
    code, out, _ = run(capsys, "worker", "--once", "--name", "w1", "--lease", "10")
    assert (code, out.strip()) == (0, "worker w1: 1 job(s) finished")
    code, out, _ = run(capsys, "jobs", "show", str(job))
    assert code == 0
    assert f"job {job}: failed after 1 attempt(s)" in out
    assert "error: RuntimeError: this job fails on purpose" in out
    code, out, _ = run(capsys, "jobs", "logs", str(job))
    assert "attempt running in pid" in out and "this job fails on purpose" in out


def test_pipeline_run_json_then_cached_then_no_cache(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "doubler.py"
    path.write_text(DOUBLER)
    report = run_json(capsys, "pipeline", "run", str(path), "--param", "n=21")
    assert (report["pipeline"], report["params"], report["error"]) == ("doubler", {"n": 21}, None)
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("double", "ran")]
    again = run_json(capsys, "pipeline", "run", str(path), "--param", "n=21")
    assert [s["status"] for s in again["steps"]] == ["cached"]
    assert again["run_id"] != report["run_id"]
    code, out, err = run(capsys, "pipeline", "run", str(path), "--param", "n=21", "--no-cache")
    assert code == 0, err
    assert "run " in out and "of doubler" in out and "ran" in out
