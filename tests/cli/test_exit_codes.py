"""Every command group's bad input: exit 1 with an ``error:`` line saying what and how to fix,
exit 2 with typer's usage message for a malformed command line, and the registry unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelfleet.cli import main
from tests.models import sum_graph

PIPELINE = Path(__file__).resolve().parents[1] / "jobs" / "pipelines" / "slow.py"


def _globals(home: Path) -> list[str]:
    # Flags, not env: the module-wide registry is made before the per-test env clean-up runs.
    return [
        "--home",
        str(home),
        "--db-url",
        f"sqlite:///{home / 'registry.db'}",
        "--artifacts",
        str(home / "artifacts"),
    ]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding adder:1 (frozen), shared by the read-only cases below."""
    root = tmp_path_factory.mktemp("codes")
    model = root / "sum.onnx"
    model.write_bytes(sum_graph().SerializeToString())
    home = root / "home"
    assert main([*_globals(home), "register", str(model), "--name", "adder", "--json"]) == 0
    return home


def run(home: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*_globals(home), *args])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


USER_ERRORS = [
    (["build", "ghost", "--env", "qa", "--engine", "none"], "model 'ghost' not found"),
    (["build", "adder:1", "--env", "qa", "--engine", "nonsense"], "unknown engine 'nonsense'"),
    (["build", "adder:1", "--env", "staging", "--engine", "none"], "dev, qa, uat, prod"),
    (["deploy", "adder:1", "--env", "qa", "--autoscale", "5"], "write MIN:MAX, e.g. 2:10"),
    (["deploy", "adder:1", "--env", "qa", "--autoscale", "5:2"], "1 <= MIN <= MAX"),
    (["deploy", "adder:1", "--env", "qa", "--replicas", "0"], "replicas must be at least 1"),
    (["deploy", "adder:9", "--env", "qa"], "model 'adder:9' not found (known: versions 1)"),
    (["rollback", "adder", "--env", "staging"], "dev, qa, uat, prod"),
    (["freeze", "adder:1"], "adder:1 is already frozen; run 'modelfleet artifacts adder:1'"),
    (["freeze", "ghost"], "model 'ghost' not found"),
    (["quantize", "adder:1", "--to", "int8", "--eval", "/nonexistent/e.npz"], "does not exist"),
    (["jobs", "show", "99"], "job 99 does not exist; run 'modelfleet jobs list'"),
    (["jobs", "cancel", "99"], "job 99 does not exist"),
    (["jobs", "logs", "99"], "job 99 does not exist"),
    (["jobs", "submit", "/nonexistent/p.py"], "pipeline file /nonexistent/p.py does not exist"),
    (["jobs", "submit", str(PIPELINE), "--backend", "slurm"], "use local or kubernetes"),
    (["jobs", "submit", str(PIPELINE), "--max-attempts", "0"], "max attempts >= 1"),
    (["jobs", "submit", str(PIPELINE), "--gpus", "-1"], "invalid resources (gpus=-1"),
    (["jobs", "submit", str(PIPELINE), "--param", "seconds"], "write --param key=value"),
    (["pipeline", "run", "/nonexistent/p.py"], "does not exist; check the path"),
    (["monitor", "rules", "--namespace", "Bad_NS"], "invalid namespace 'Bad_NS'"),
    (["monitor", "rules", "--label", "release"], "write KEY=VALUE"),
    (["monitor", "rules", "--for", "soon"], "invalid alert duration 'soon'"),
    (["monitor", "watch", "http://127.0.0.1:1", "--min-accuracy", "2"], "0 <= --min-accuracy"),
    (["feedback", "adder"], "no labels given; pass REQUEST_ID=LABEL pairs or --file"),
    (["feedback", "adder", "r1"], "invalid label 'r1'; write REQUEST_ID=LABEL"),
    (["feedback", "adder", "--file", "/nonexistent/f.csv"], "check --file"),
    (["serve"], "nothing to serve; give a model reference or --config FILE"),
    (["status", "http://127.0.0.1:1", "--once"], "cannot reach http://127.0.0.1:1"),
]


@pytest.mark.parametrize(("args", "message"), USER_ERRORS, ids=lambda v: str(v)[:48])
def test_user_errors_exit_1_with_what_went_wrong(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(home, capsys, *args)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


USAGE_ERRORS = [
    (["register", "x.onnx", "--nmae", "adder"], "No such option: --nmae"),
    (["promote", "adder:1"], "--to"),
    (["quantize", "adder:1"], "--to"),
    (["build", "adder:1"], "--env"),
    (["deploy", "adder:1"], "--env"),
    (["jobs", "show", "one"], "job_id"),
    (["jobs", "list", "--limit", "many"], "--limit"),
    (["jobs", "cancel"], "job_id"),
    (["worker", "--gpus", "two"], "--gpus"),
    (["status", "http://127.0.0.1:1", "--interval", "0.1"], "--interval"),
    (["monitor", "rules", "--latency-p99-ms", "fast"], "--latency-p99-ms"),
    (["monitor"], "Commands"),
    (["jobs"], "Commands"),
    (["no-such-command"], "no-such-command"),
]


@pytest.mark.parametrize(("args", "needle"), USAGE_ERRORS, ids=lambda v: str(v)[:40])
def test_usage_errors_exit_2_and_name_the_culprit(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = run(home, capsys, *args)
    assert code == 2
    assert needle in out + err
    assert "Traceback" not in out + err


def test_none_of_the_bad_commands_changed_the_registry_or_queue(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, _ in USER_ERRORS:
        run(home, capsys, *args)
    code, out, _ = run(home, capsys, "models", "--json")
    assert code == 0
    assert [(m["name"], m["versions"], m["stages"]) for m in json.loads(out)] == [("adder", 1, {})]
    code, out, _ = run(home, capsys, "jobs", "list", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = run(home, capsys, "history", "adder", "--json")
    assert (code, json.loads(out)) == (0, [])
