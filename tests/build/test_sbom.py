"""The SBOM lists exactly what is installed, valid CycloneDX; a scan that could not run says so."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from modelfleet.build.sbom import audit, wheel_packages, write_sbom

MODEL_SHA = hashlib.sha256(b"a graph").hexdigest()


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel with one module, laid out as the wheel spec (PEP 427) says."""
    stem = f"{name.replace('-', '_')}-{version}"
    module = name.replace("-", "_").lower()
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{stem}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{stem}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: modelfleet-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{stem}.dist-info/RECORD,,")
    files[f"{stem}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Three wheels, and the folder pip installed them into (offline, from those files)."""
    root = tmp_path_factory.mktemp("sbom-env")
    wheels_dir = root / "wheels"
    wheels_dir.mkdir()
    wheels = [
        make_wheel(wheels_dir, "Tiny_Parser", "1.2.0"),
        make_wheel(wheels_dir, "tiny-server", "0.9.1rc1"),
        make_wheel(wheels_dir, "zeta", "2024.1"),
    ]
    target = root / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"),
            *("--disable-pip-version-check", "--target", str(target), *map(str, wheels)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return wheels, target


def test_packages_are_what_pip_installed_with_the_wheel_digests(
    environment: tuple[list[Path], Path],
) -> None:
    wheels, site = environment
    packages = wheel_packages(list(reversed(wheels)))
    installed = sorted(
        (canonicalize_name(d.metadata["Name"]), d.version)
        for d in importlib.metadata.distributions(path=[str(site)])
    )
    assert [(n, v) for n, v, _ in packages] == installed  # sorted, names canonical
    digests = {hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}
    assert {sha for _, _, sha in packages} == digests


def test_the_sbom_is_valid_cyclonedx_and_lists_every_package_and_the_model(
    environment: tuple[list[Path], Path], tmp_path: Path
) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    wheels, _ = environment
    packages = wheel_packages(wheels)
    path = tmp_path / "sbom.cdx.json"
    tag = "localhost/modelfleet/adder:3-prod"
    data = write_sbom(
        path, image=tag, packages=packages, model="adder", model_version="3", model_sha256=MODEL_SHA
    )
    text = path.read_text()
    assert json.loads(text) == data
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert data["specVersion"] == "1.6"
    root = data["metadata"]["component"]
    assert (root["name"], root["type"]) == (tag, "container")
    libraries = {c["name"]: c for c in data["components"] if c["type"] == "library"}
    assert set(libraries) == {name for name, _, _ in packages}
    for name, version, sha in packages:
        component = libraries[name]
        assert component["version"] == version
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        assert component["hashes"] == [{"alg": "SHA-256", "content": sha}]
    (model,) = [c for c in data["components"] if c["type"] == "machine-learning-model"]
    assert (model["name"], model["version"]) == ("adder", "3")
    assert model["hashes"] == [{"alg": "SHA-256", "content": MODEL_SHA}]
    # The image depends directly on every component, and on nothing else.
    (image_deps,) = [d for d in data["dependencies"] if d["ref"] == root["bom-ref"]]
    assert sorted(image_deps["dependsOn"]) == sorted(c["bom-ref"] for c in data["components"])
    assert len(data["components"]) == len(packages) + 1


def _assert_not_clean(report: dict[str, object], packages: list[tuple[str, str, str]]) -> None:
    assert report["scanned"] is False
    assert report["status"] == "not-run"
    assert report["audited"] == 0
    assert report["vulnerabilities"] == []
    assert set(report["not_audited"]) == {name for name, _, _ in packages}  # type: ignore[arg-type]
    summary = str(report["summary"])
    assert summary.startswith("vulnerability scan did not run: ")
    assert f"the {len(packages)} packages are unaudited (this is not a clean result)" in summary


def test_an_unreachable_vulnerability_service_is_reported_not_clean(
    environment: tuple[list[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = wheel_packages(environment[0])
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")  # a closed loopback port
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached answers
    report = audit(packages, tmp_path)
    _assert_not_clean(report, packages)
    assert "the vulnerability service did not answer" in str(report["summary"])
    pins = (tmp_path / "requirements.lock").read_text().splitlines()
    assert pins == [f"{name}=={version}" for name, version, _ in packages]


def test_a_scan_that_runs_out_of_time_is_reported_not_clean(
    environment: tuple[list[Path], Path], tmp_path: Path
) -> None:
    packages = wheel_packages(environment[0])
    report = audit(packages, tmp_path, timeout=0.05)
    _assert_not_clean(report, packages)
    assert "pip-audit did not finish within" in str(report["summary"])
