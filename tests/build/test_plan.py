"""Build plans and Containerfiles read back: least privilege, offline, labelled, consistent."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.build import build as build_image
from modelfleet.build import image_tag, plan_build
from modelfleet.build.context import CONFIG_PATH, MODEL_PATH, containerfile, serve_config
from modelfleet.config import Settings
from modelfleet.errors import BuildError, InvalidReferenceError, ModelNotFoundError
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from tests.models import sum_graph

BASE = "registry.example.com/team/python:3.11-slim"


@pytest.fixture
def adder(registry: Registry) -> mf.ModelVersion:
    return mf.register(sum_graph(), name="adder", metrics={"accuracy": 0.97}, registry=registry)


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Containerfile, continuation lines joined."""
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for raw in logical.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, each starting with its FROM."""
    out: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            out.append([])
        out[-1].append((keyword, rest))
    return out


def labels_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "LABEL":
            for key, value in re.findall(r'(\S+?)=("(?:[^"\\]|\\.)*")', rest):
                found[key] = json.loads(value)
    return found


@pytest.mark.parametrize("environment", list(Stage))
def test_the_final_stage_runs_unprivileged_from_the_verified_graph(
    adder: mf.ModelVersion, environment: Stage
) -> None:
    plan = plan_build(adder, environment, base=BASE)
    install, final = stages(containerfile(plan))
    assert install[0] == ("FROM", f"{BASE} AS install")
    assert final[0] == ("FROM", BASE)
    keywords = [k for k, _ in final]
    # One numeric, non-root USER, after every step that writes the image, before the entry.
    users = [rest for k, rest in final if k == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert int(uid) > 0
    assert int(gid) > 0
    last_write = max(i for i, k in enumerate(keywords) if k in ("RUN", "COPY"))
    assert last_write < keywords.index("USER") < keywords.index("ENTRYPOINT")
    # The graph is copied to where the baked serve config points, and its digest checked.
    copies = {rest.split()[-2]: rest.split()[-1] for k, rest in final if k == "COPY"}
    config = serve_config(adder)
    assert copies["model.onnx"] == MODEL_PATH == config.models[0].ref
    assert copies["serve.yaml"] == CONFIG_PATH
    sha = adder.artifact("onnx").sha256
    assert ("RUN", f'echo "{sha}  {MODEL_PATH}" | sha256sum -c -') in final
    env = dict(
        item.split("=", 1) for rest in (r for k, r in final if k == "ENV") for item in rest.split()
    )
    assert env["MODELFLEET_ENVIRONMENT"] == environment.value
    assert env["MODELFLEET_HOME"].startswith("/tmp/")  # the only writable place at run time
    entry = json.loads(dict(final)["ENTRYPOINT"])
    assert entry == ["/opt/venv/bin/python", "-m", "modelfleet.serving", "--config", CONFIG_PATH]


def test_the_build_downloads_nothing(adder: mf.ModelVersion) -> None:
    text = containerfile(plan_build(adder, Stage.PROD, base=BASE))
    steps = instructions(text)
    assert not [k for k, _ in steps if k == "ADD"]  # ADD can fetch URLs
    runs = [rest for k, rest in steps if k == "RUN"]
    for run in runs:
        assert not re.search(r"https?://|\bcurl\b|\bwget\b|apt-get|git clone", run), run
    installs = re.findall(r"\$PIP install [^&]*", " ".join(runs))
    assert len(installs) == 2
    for install in installs:
        assert "--no-index" in install
        assert "--find-links /wheels" in install
    copies = [rest for k, rest in steps if k == "COPY" and not rest.startswith("--from")]
    sources = {rest.split()[0] for rest in copies}
    assert sources == {"wheels/", "model.onnx", "serve.yaml"}  # all from the context


def test_the_healthcheck_probes_v2_readiness_on_the_served_port(adder: mf.ModelVersion) -> None:
    _, final = stages(containerfile(plan_build(adder, Stage.QA, base=BASE)))
    options, _, command = dict(final)["HEALTHCHECK"].partition(" CMD ")
    assert {"--interval=10s", "--timeout=3s", "--retries=3"} <= set(options.split())
    argv = json.loads(command)  # exec form: no shell needed in the image
    assert argv[:2] == ["/opt/venv/bin/python", "-c"]
    port = serve_config(adder).server.port
    assert dict(final)["EXPOSE"] == str(port)
    assert f"'http://127.0.0.1:{port}/v2/health/ready'" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # the probe is valid Python


def test_labels_carry_the_oci_and_model_identity(
    adder: mf.ModelVersion, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    plan = plan_build(adder, Stage.UAT, base=BASE)
    _, final = stages(containerfile(plan))
    labels = labels_of(final)
    assert labels == plan.labels  # what the image carries is what build reports
    assert labels["org.opencontainers.image.base.name"] == BASE
    assert labels["org.opencontainers.image.version"] == "1-uat"
    assert labels["org.opencontainers.image.revision"] == (head or "unknown")
    assert labels["io.modelfleet.model"] == "adder"
    assert labels["io.modelfleet.model.version"] == "1"
    assert labels["io.modelfleet.model.variant"] == "fp32"
    assert labels["io.modelfleet.environment"] == "uat"
    assert labels["io.modelfleet.artifact.sha256"] == adder.artifact("onnx").sha256
    assert labels["io.modelfleet.version"] == mf.__version__
    monkeypatch.chdir(tmp_path)  # outside any git work tree
    outside = plan_build(adder, Stage.UAT, base=BASE)
    assert outside.labels["org.opencontainers.image.revision"] == "unknown"


def test_tags_encode_model_version_and_environment(registry: Registry) -> None:
    version = mf.register(sum_graph(), name="Churn_Model", registry=registry)
    assert image_tag(version, Stage.PROD) == "localhost/modelfleet/churn-model-431ffbc9:1-prod"
    assert (
        image_tag(version, Stage.DEV, repository="ghcr.io/acme")
        == "ghcr.io/acme/churn-model-431ffbc9:1-dev"
    )
    tags = {image_tag(version, stage) for stage in Stage}
    assert len(tags) == len(Stage)  # one image per environment, never shared
    plan = plan_build(version, Stage.QA, base=BASE, tag="ghcr.io/acme/churn:candidate")
    assert plan.tag == "ghcr.io/acme/churn:candidate"
    assert plan.labels["org.opencontainers.image.version"] == "1-qa"


def _build(registry: Registry, settings: Settings, ref: str, out: Path, **kw: str) -> None:
    build_image(registry, ref, Stage.QA, out=out, cache=settings.home / "cache", engine=None, **kw)


def test_unknown_refs_fail_before_anything_is_written(
    adder: mf.ModelVersion, registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "ctx"
    with pytest.raises(ModelNotFoundError) as caught:
        _build(registry, settings, "ghost", out)
    assert "model 'ghost' not found" in str(caught.value)
    assert caught.value.hint is not None
    with pytest.raises(ModelNotFoundError, match="adder:9"):
        _build(registry, settings, "adder:9", out)
    with pytest.raises(InvalidReferenceError, match="the version must be a positive integer"):
        _build(registry, settings, "adder:0", out)
    assert not out.exists()
    assert not (settings.home / "cache").exists()


def test_a_missing_variant_names_the_quantize_command(
    adder: mf.ModelVersion, registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "ctx"
    with pytest.raises(BuildError) as caught:
        _build(registry, settings, "adder:1", out, variant="int8")
    assert "adder:1 has no int8 variant" in str(caught.value)
    assert caught.value.hint == "create one with 'modelfleet quantize adder:1 --to int8'"
    assert not out.exists()


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    from modelfleet.cli import main

    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return " ".join(captured.err.split())


def test_cli_build_explains_bad_environments_and_engines(
    adder: mf.ModelVersion,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    env = _cli_error(capsys, ["build", "adder:1", "--env", "staging", "--engine", "none"])
    assert "'staging'" in env
    assert "use one of dev, qa, uat, prod" in env
    engine = _cli_error(capsys, ["build", "adder:1", "--env", "qa", "--engine", "kaniko"])
    assert "unknown engine 'kaniko'; use auto, podman, docker, buildah or none" in engine
    ghost = _cli_error(capsys, ["build", "adder:2", "--env", "qa", "--engine", "none"])
    assert "'adder:2' not found" in ghost
    assert not (settings.home / "builds").exists()  # nothing half-written
