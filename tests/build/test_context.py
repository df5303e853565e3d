"""Build contexts: golden Containerfile, lean runtime, SBOM, honest scan, bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import yaml

import modelfleet as mf
from modelfleet.build.context import (
    containerfile,
    plan_build,
    serve_config,
    serve_yaml,
    write_context,
)
from modelfleet.build.engines import find_engine
from modelfleet.build.sbom import audit
from modelfleet.config import Settings
from modelfleet.errors import BuildError
from modelfleet.refs import Stage
from modelfleet.registry import Registry
from modelfleet.serving import load_serve_config
from tests.models import sum_graph

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def adder(registry: Registry) -> mf.ModelVersion:
    return mf.register(sum_graph(), name="adder", metrics={"accuracy": 0.99}, registry=registry)


def _normalised(text: str) -> str:
    return re.sub(r'(org.opencontainers.image.revision=)"[^"]*"', r'\1"<git>"', text)


def test_containerfile_matches_the_golden_file(adder: mf.ModelVersion) -> None:
    plan = plan_build(adder, Stage.QA, base="localhost/modelfleet-base:bookworm")
    assert plan.tag == "localhost/modelfleet/adder:1-qa"
    text = _normalised(containerfile(plan))
    golden = GOLDEN / "Containerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    for needle in (
        "USER 10001:10001",
        "EXPOSE 8080",
        "HEALTHCHECK",
        "--no-index",
        f"{adder.artifact('onnx').sha256}  /opt/modelfleet/model.onnx",
    ):
        assert needle in text


def test_serve_config_pins_the_graph(adder: mf.ModelVersion) -> None:
    config = serve_config(adder)
    golden = GOLDEN / "serve.yaml"
    text = serve_yaml(config)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    parsed = load_serve_config(golden)  # the server accepts what is baked
    assert parsed.models[0].sha256 == adder.artifact("onnx").sha256
    assert parsed == config


@pytest.mark.slow
def test_context_holds_model_runtime_wheels_sbom_and_scan(
    adder: mf.ModelVersion, registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    plan = plan_build(adder, Stage.PROD, base="localhost/modelfleet-base:bookworm")
    written = write_context(plan, registry, tmp_path / "ctx", cache=settings.home / "cache")
    ctx = tmp_path / "ctx"
    assert (
        hashlib.sha256((ctx / "model.onnx").read_bytes()).hexdigest()
        == adder.artifact("onnx").sha256
    )
    runtime = (ctx / "wheels" / "runtime.txt").read_text()
    for name in ("onnxruntime==", "starlette==", "uvicorn==", "numpy==", "prometheus-client=="):
        assert name in runtime.lower()
    for absent in ("sqlalchemy", "typer", "rich", "scikit-learn", "torch"):
        assert absent not in runtime.lower()
    wheels = {p.name.split("-")[0].lower() for p in (ctx / "wheels").glob("*.whl")}
    assert {"modelfleet", "onnxruntime", "numpy", "pip"} <= wheels
    assert "sqlalchemy" not in wheels
    sbom = json.loads((ctx / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    components = {c["name"]: c for c in sbom["components"]}
    assert components["onnxruntime"]["purl"].startswith("pkg:pypi/onnxruntime@")
    assert components["onnxruntime"]["hashes"][0]["alg"] == "SHA-256"
    model = components["adder"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"][0]["content"] == adder.artifact("onnx").sha256
    report = json.loads((ctx / "vulnerabilities.json").read_text())
    assert report == written["audit"]
    build = json.loads((ctx / "build.json").read_text())
    assert build["labels"]["io.modelfleet.environment"] == "prod"


def test_a_scan_that_could_not_check_never_reads_clean(tmp_path: Path) -> None:
    packages = [("numpy", "2.4.6", "0" * 64), ("no-such-package-xyz", "0.0.1", "0" * 64)]
    report = audit(packages, tmp_path)
    if report["not_audited"]:
        assert report["status"] in ("not-run", "partial")
        assert "not" in report["summary"].lower()
        assert "no known vulnerabilities" not in report["summary"].lower()
    else:  # a machine whose vulnerability service answered for every package
        assert report["status"] == "complete"
    assert "no-such-package-xyz" in report["not_audited"] or report["status"] == "not-run"


def test_versions_without_a_graph_are_refused(registry: Registry) -> None:
    from sklearn.linear_model import LogisticRegression

    from tests.models import iris

    X, y = iris()
    version = mf.register(
        LogisticRegression(max_iter=300).fit(X, y),
        name="raw",
        sample_input=X,
        freeze=False,
        registry=registry,
    )
    with pytest.raises(BuildError, match=r"no ONNX graph.*modelfleet freeze raw:1"):
        plan_build(version, Stage.DEV, base="x")


def test_unwritable_output_folder_is_explained(
    adder: mf.ModelVersion, registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        plan = plan_build(adder, Stage.DEV, base="x")
        if os.geteuid() == 0:  # root ignores permissions: use a path under a regular file
            target = tmp_path / "file"
            target.write_text("")
            out = target / "ctx"
        else:
            out = locked / "ctx"
        with pytest.raises(BuildError, match="cannot write the build context"):
            write_context(plan, registry, out, cache=settings.home / "cache")
    finally:
        locked.chmod(0o700)


def test_engines_are_found_or_explained() -> None:
    assert find_engine("none") is None
    with pytest.raises(BuildError, match="unknown engine 'kaniko'"):
        find_engine("kaniko")
    import shutil

    if shutil.which("docker") is None or not os.path.exists("/var/run/docker.sock"):
        with pytest.raises(BuildError, match="docker engine is not available"):
            find_engine("docker")


def test_cli_build_without_engine_writes_the_context(
    adder: mf.ModelVersion,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelfleet.cli import main

    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    assert (
        main(
            [
                "build",
                "adder:1",
                "--env",
                "uat",
                "--engine",
                "none",
                "--out",
                str(tmp_path / "ctx"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["digest"] is None
    assert result["tag"] == "localhost/modelfleet/adder:1-uat"
    assert (tmp_path / "ctx" / "Containerfile").is_file()
    assert main(["build", "ghost", "--env", "uat", "--engine", "none"]) == 1
    assert "model 'ghost' not found" in capsys.readouterr().err
    assert main(["build", "adder:1", "--env", "staging", "--engine", "none"]) == 1


def test_a_profiled_version_ships_its_drift_profile(registry: Registry) -> None:
    from modelfleet.build.context import PROFILE_PATH
    from modelfleet.serving.settings import ServeConfig
    from tests.models import logistic_pipeline

    model, X, _ = logistic_pipeline()
    version = mf.register(model, name="iris", sample_input=X, training_data=X, registry=registry)
    profile = registry.reference_profile(version)
    assert profile is not None
    assert set(json.loads(profile)["features"]) == {f"input[{j}]" for j in range(4)}
    plan = plan_build(version, Stage.PROD, base="localhost/modelfleet-base:bookworm")
    assert f"COPY profile.json {PROFILE_PATH}" in containerfile(plan, profile=True)
    assert "profile.json" not in containerfile(plan)
    baked = ServeConfig.model_validate(
        yaml.safe_load(serve_yaml(serve_config(version, profile=True)))
    )
    assert baked.models[0].watch.profile == PROFILE_PATH
