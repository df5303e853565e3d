"""Image engines: which one is chosen, the argv each gets, and what their failures say."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.build.context import LOCAL_BASE
from modelfleet.build.engines import CliEngine, find_engine
from modelfleet.errors import BuildError


def _bin_dir(tmp_path: Path, *names: str) -> Path:
    """A folder holding links to the real engine binaries named, to serve as the only PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        real = shutil.which(name)
        if real is None:
            pytest.skip(f"{name} is not installed on this machine")
        (folder / name).symlink_to(real)
    return folder


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def _has_docker_daemon() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run(
        [docker, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return probe.returncode == 0 and bool(probe.stdout.strip())


def test_auto_prefers_podman_over_docker_and_buildah(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_bin_dir(tmp_path, "podman", "buildah")))
    engine = find_engine("auto")
    assert engine is not None
    assert engine.name == "podman"
    assert isinstance(engine, CliEngine)
    assert engine.binary == str(tmp_path / "bin" / "podman")


def test_a_docker_client_without_daemon_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _has_docker_daemon():
        pytest.skip("a docker daemon answers on this machine")
    monkeypatch.setenv("PATH", str(_bin_dir(tmp_path, "docker", "buildah")))
    engine = find_engine("auto")
    assert engine is not None
    assert engine.name == "buildah"  # docker ranks higher, but nothing would build with it
    (tmp_path / "bin" / "buildah").unlink()
    assert find_engine("auto") is None
    with pytest.raises(BuildError) as caught:
        find_engine("docker")
    message = str(caught.value)
    assert "the docker engine is not available on this machine" in message
    assert "--engine auto / none" in message


def test_a_docker_whose_daemon_answers_is_chosen_before_buildah(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _bin_dir(tmp_path, "buildah")
    # A docker client that reports a server version, as one does when its daemon runs.
    _script(folder / "docker", "print('27.3.1')\n")
    monkeypatch.setenv("PATH", str(folder))
    engine = find_engine("auto")
    assert engine is not None
    assert engine.name == "docker"
    # A client that exits 0 but names no server is not a daemon.
    _script(folder / "docker", "")
    engine = find_engine("auto")
    assert engine is not None
    assert engine.name == "buildah"


def test_a_named_engine_missing_from_path_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_bin_dir(tmp_path)))
    assert find_engine("auto") is None  # the context can still be written
    for name in ("podman", "buildah"):
        with pytest.raises(BuildError) as caught:
            find_engine(name)
        assert caught.value.hint is not None
        assert f"the {name} engine is not available" in str(caught.value)
        assert f"install {name}" in caught.value.hint


@pytest.mark.parametrize("choice", ["Podman", "kaniko", ""])
def test_unknown_engine_names_list_the_valid_ones(choice: str) -> None:
    with pytest.raises(BuildError) as caught:
        find_engine(choice)
    assert f"unknown engine {choice!r}" in str(caught.value)
    assert caught.value.hint == "use auto, podman, docker, buildah or none"


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in engine binary that records its argv and answers ``inspect``."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("ENGINE_CALLS", str(log))
    _script(
        tmp_path / "engine",
        "import json, os, sys\n"
        "with open(os.environ['ENGINE_CALLS'], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if 'inspect' in sys.argv:\n"
        "    print(json.dumps([{'Digest': 'sha256:' + 'ab' * 32, 'Size': 4096}]))\n",
    )
    return log


@pytest.mark.parametrize(
    ("name", "build_verb", "inspect_verb"),
    [
        ("podman", ["build", "--format", "docker", "--layers"], ["image", "inspect"]),
        ("buildah", ["bud", "--format", "docker", "--layers"], ["inspect", "--type", "image"]),
        ("docker", ["build"], ["image", "inspect"]),
    ],
)
def test_each_engine_builds_offline_from_the_containerfile(
    name: str,
    build_verb: list[str],
    inspect_verb: list[str],
    recorder: Path,
    tmp_path: Path,
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    engine = CliEngine(name, str(tmp_path / "engine"))
    info = engine.build(context, "localhost/modelfleet/adder:1-qa")
    calls = [json.loads(line) for line in recorder.read_text().splitlines()]
    assert calls == [
        [
            *build_verb,
            "-t",
            "localhost/modelfleet/adder:1-qa",
            "-f",
            str(context / "Containerfile"),
            "--network",
            "none",
            str(context),
        ],
        [*inspect_verb, "localhost/modelfleet/adder:1-qa"],
    ]
    assert info.tag == "localhost/modelfleet/adder:1-qa"
    assert info.digest == "sha256:" + "ab" * 32
    assert info.size == 4096


def test_an_engine_binary_that_cannot_start_is_named(tmp_path: Path) -> None:
    engine = CliEngine("podman", str(tmp_path / "gone" / "podman"))
    with pytest.raises(BuildError, match=r"podman build could not start .*gone/podman"):
        engine.build(tmp_path, "localhost/x:1")


# Real engines, cheap commands only: inspect an existing image, and builds that stop at their
# first RUN step (they produce no image).


def _engine(name: str) -> CliEngine:
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed on this machine")
    return CliEngine(name, binary)


@pytest.fixture(scope="module")
def base_image() -> str:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed on this machine")
    if subprocess.run([podman, "image", "exists", LOCAL_BASE], check=False).returncode != 0:
        from modelfleet.build.baseimage import make_base_image

        make_base_image(CliEngine("podman", podman), tag=LOCAL_BASE)
    return LOCAL_BASE


@pytest.mark.podman
@pytest.mark.parametrize("name", ["podman", "buildah"])
def test_inspect_reports_the_digest_the_engine_stores(name: str, base_image: str) -> None:
    info = _engine(name).inspect(base_image)
    expected = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Digest}}", base_image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert info.tag == base_image
    assert info.digest == expected
    assert info.digest.startswith("sha256:")


@pytest.mark.podman
@pytest.mark.parametrize("name", ["podman", "buildah"])
def test_inspect_of_an_unknown_image_fails_with_the_engine_message(name: str) -> None:
    with pytest.raises(BuildError) as caught:
        _engine(name).inspect("localhost/modelfleet/never-built-xyz:1-qa")
    message = str(caught.value)
    assert message.startswith(f"{name} inspect failed (exit ")
    assert "never-built-xyz" in message


@pytest.mark.podman
@pytest.mark.parametrize("name", ["podman", "buildah"])
def test_a_build_has_no_network_and_its_failure_shows_the_step_output(
    name: str, base_image: str, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    # The step lists the network interfaces it sees, then fails: no image is produced.
    (context / "Containerfile").write_text(
        f"FROM {base_image}\nRUN ls /sys/class/net >&2; echo step-ran >&2; exit 3\n"
    )
    tag = f"localhost/modelfleet/network-probe-{os.getpid()}:1-dev"
    with pytest.raises(BuildError) as caught:
        _engine(name).build(context, tag)
    message = str(caught.value)
    assert message.startswith(f"{name} build failed (exit ")
    lines = message.splitlines()
    ran = lines.index("step-ran")
    interfaces = lines[1:ran]
    assert interfaces == ["lo"], message  # loopback only: nothing can be downloaded
    exists = subprocess.run(["podman", "image", "exists", tag], check=False)
    assert exists.returncode == 1
