"""deploy wires the shared state backend into the pods, through a Secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelfleet.deploy import render, to_dict, write
from modelfleet.errors import DeployError
from tests.deploy.specs import make_spec, validate

URL = "postgresql://mf:s3cret@state-db.modelfleet-prod.svc:5432/state"


def _env(objects: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    pod = objects["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    return list(pod["containers"][0]["env"])


def test_a_state_url_becomes_a_secret_the_pods_read() -> None:
    spec = make_spec(state_secret="churn-model-state")
    objects = {o["kind"]: o for o in (to_dict(x) for x in render(spec, state_url=URL))}
    secret = objects["Secret"]
    assert secret["metadata"]["name"] == "churn-model-state"
    assert secret["metadata"]["namespace"] == "modelfleet-prod"
    assert secret["stringData"] == {"url": URL}
    wired = {e["name"]: e for e in _env(objects)}["MODELFLEET_STATE_URL"]
    # The password never sits in the Deployment: the pods read it from the Secret.
    assert wired == {
        "name": "MODELFLEET_STATE_URL",
        "valueFrom": {"secretKeyRef": {"name": "churn-model-state", "key": "url"}},
    }
    assert "s3cret" not in json.dumps(objects["Deployment"])
    for obj in objects.values():
        if obj["apiVersion"] in ("v1", "apps/v1"):
            validate(obj)
    # The KServe variant runs the same container: it reads the same Secret.
    kserve = [to_dict(x) for x in render(spec, kserve=True, state_url=URL)]
    assert [o["kind"] for o in kserve] == ["Namespace", "Secret", "InferenceService"]


def test_an_existing_secret_is_referenced_and_not_rendered() -> None:
    objects = {o["kind"]: o for o in (to_dict(x) for x in render(make_spec(state_secret="ops")))}
    assert "Secret" not in objects
    names = [e["name"] for e in _env(objects)]
    assert "MODELFLEET_STATE_URL" in names
    plain = {o["kind"]: o for o in (to_dict(x) for x in render(make_spec()))}
    assert [e["name"] for e in _env(plain)] == ["MODELFLEET_ENVIRONMENT"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite:///tmp/state.db", "must name PostgreSQL or Redis"),
        ("redis://127.0.0.1:6379/0", "every pod would look inside itself"),
        ("postgresql://u:p@localhost/db", "every pod would look inside itself"),
        ("state-db:5432", "must name PostgreSQL or Redis"),
    ],
)
def test_state_urls_pods_cannot_use_are_refused(url: str, words: str) -> None:
    with pytest.raises(DeployError, match=words):
        render(make_spec(state_secret="s"), state_url=url)


def test_the_written_secret_is_private(tmp_path: Path) -> None:
    files = write(render(make_spec(state_secret="churn-model-state"), state_url=URL), tmp_path)
    secret = tmp_path / "secret.yaml"
    assert secret in files
    assert secret.stat().st_mode & 0o077 == 0
    assert yaml.safe_load(secret.read_text())["stringData"]["url"] == URL
    with pytest.raises(DeployError, match="Secret name"):
        make_spec(state_secret="Bad_Name")


def test_cli_deploy_with_a_state_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelfleet as mf
    from modelfleet.cli import main
    from modelfleet.config import Settings
    from modelfleet.registry import Registry
    from tests.models import sum_graph

    home = tmp_path / "home"
    with Registry.open(Settings(home=home)) as reg:
        mf.register(sum_graph(), name="adder", registry=reg)
    monkeypatch.setenv("MODELFLEET_HOME", str(home))
    out = tmp_path / "m"
    args = ["deploy", "adder:1", "--env", "qa", "--out", str(out)]
    assert main([*args, "--state-url", "redis://state-cache:6379/0"]) == 0
    secret = yaml.safe_load((out / "secret.yaml").read_text())
    assert secret["metadata"]["name"] == "adder-state"
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "MODELFLEET_STATE_URL",
        "valueFrom": {"secretKeyRef": {"name": "adder-state", "key": "url"}},
    } in env
    capsys.readouterr()
    assert main([*args, "--state-url", "redis://localhost:6379/0"]) == 1
    assert "every pod would look inside itself" in capsys.readouterr().err
