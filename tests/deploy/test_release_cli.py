"""``modelfleet release``: the dry run (the default) renders the canary and prints the plan
without a cluster; bad input and a missing or silent cluster fail in one line, exit 1,
and leave the registry's history as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelfleet.cli import main
from tests.deploy.specs import validate
from tests.kube.kubeconfigs import kubeconfig
from tests.models import sum_graph
from tests.servers import free_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry with adder:1 and adder:2, version 2 in prod; no cluster anywhere around."""
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")  # lines and tables unwrapped
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    model = tmp_path / "sum.onnx"
    model.write_bytes(sum_graph().SerializeToString())
    for _ in range(2):
        assert main(["register", str(model), "--name", "adder", "--json"]) == 0
    assert main(["promote", "adder:2", "--to", "prod"]) == 0
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr as one line."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def history(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out, _ = run(capsys, "history", "adder", "--json")
    assert code == 0
    events: list[dict[str, object]] = json.loads(out)
    return events


def test_the_dry_run_is_the_default_and_prints_the_plan(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "release", "adder", "--env", "prod", "--replicas", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "dry run: release adder:2 (adder@prod) to modelfleet-prod; --apply runs it:"
    assert "start Deployment adder-canary: 1 pod(s) of version 2 beside 3 stable, ~25% of" in out
    assert "judge for 300 s (up to 300 s while traffic is short)" in out
    assert "promote: roll adder out to version 2, delete adder-canary" in out
    assert "roll back: delete adder-canary, leave adder as it is" in out
    folder = home / "manifests" / "adder-prod-canary"
    assert f"wrote 2 canary manifests and kustomization.yaml to {folder}" in out
    for flag, value in [("--min-requests", "100"), ("--max-p99-ratio", "1.5")]:
        assert any(flag in line and value in line for line in lines)
    assert sorted(p.name for p in folder.iterdir()) == [
        "configmap.yaml",
        "deployment.yaml",
        "kustomization.yaml",
    ]
    # Nothing was released, so nothing was recorded: only the promotion is in the history.
    assert [e["reason"] for e in history(capsys)] == ["manual"]


def test_the_dry_run_as_json_with_its_own_rules(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "release",
        "adder",
        "--env",
        "prod",
        "--dry-run",
        "--canary-replicas",
        "2",
        "--replicas",
        "2",
        "--window",
        "60",
        "--max-window",
        "600",
        "--max-p99-ratio",
        "2",
        "--min-accuracy-delta",
        "0.05",
        "--out",
        str(tmp_path / "k8s"),
        "--json",
    )
    assert code == 0, err
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert plan["candidate"] == "adder:2"
    assert (plan["stable_deployment"], plan["canary_deployment"]) == ("adder", "adder-canary")
    assert (plan["canary_replicas"], plan["canary_share"]) == (2, 0.5)
    assert (plan["window_s"], plan["max_window_s"]) == (60, 600)
    assert plan["thresholds"]["max_p99_ratio"] == 2
    assert plan["thresholds"]["accuracy_delta"] == 0.05
    deployment = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    validate(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["metadata"]["labels"]["modelfleet.io/track"] == "canary"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost", "--env", "prod"], "model 'ghost' not found"),
        (["adder", "--env", "staging"], "unknown stage 'staging'; use one of dev, qa, uat, prod"),
        (
            ["adder", "--env", "qa"],
            "model 'adder@qa' not found; no version of adder is in qa; promote one with "
            "'modelfleet promote adder:N --to qa'",
        ),
        (
            ["adder@prod", "--env", "prod"],
            "release takes a model name, not 'adder@prod'; run 'modelfleet release adder "
            "--env prod': it releases the version adder@prod points at",
        ),
        (["adder", "--env", "prod", "--window", "0"], "--window must be above 0 s, got 0"),
        (
            ["adder", "--env", "prod", "--window", "60", "--max-window", "30"],
            "--max-window 30 s is shorter than --window 60 s",
        ),
        (["adder", "--env", "prod", "--canary-replicas", "0"], "--canary-replicas must be at"),
        (
            ["adder", "--env", "prod", "--max-p99-ratio", "0.5"],
            "--max-p99-ratio must be at least 1",
        ),
        (
            ["adder", "--env", "prod", "--min-accuracy-delta", "2"],
            "--min-accuracy-delta must be 0-1",
        ),
        (["adder", "--env", "prod", "--min-requests", "0"], "--min-requests must be at least 1"),
        (["adder", "--env", "prod", "--replicas", "0"], "replicas must be at least 1"),
    ],
)
def test_bad_input_fails_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "release", *args)
    assert code == 1
    assert out == ""
    assert err.startswith(f"error: {message}")
    assert not (home / "manifests").exists()


def test_apply_without_a_cluster_configuration_says_how_to_give_one(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "release", "adder", "--env", "prod", "--apply")
    assert code == 1
    assert out == ""
    assert err == (
        f"error: no cluster configuration: KUBECONFIG={tmp_path / 'no-such-kubeconfig'} does "
        "not exist; pass --kubeconfig or set KUBECONFIG"
    )
    assert [e["reason"] for e in history(capsys)] == ["manual"]


def test_apply_against_a_silent_api_server_fails_before_anything_runs(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = kubeconfig(
        tmp_path / "kubeconfig", {"dead": f"http://127.0.0.1:{free_port()}"}, "dead"
    )
    code, out, err = run(
        capsys, "release", "adder", "--env", "prod", "--apply", "--kubeconfig", str(config)
    )
    assert code == 1
    assert out == ""
    assert err.startswith("error: the Kubernetes API server does not answer:")
    assert err.endswith("check the kubeconfig's server URL and credentials")
    assert [e["reason"] for e in history(capsys)] == ["manual"]
