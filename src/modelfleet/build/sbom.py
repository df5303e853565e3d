"""What is in an image: a CycloneDX SBOM, and a vulnerability scan that never overclaims.

The scan uses pip-audit. When its vulnerability service does not answer, or skips packages,
the report says the scan did not run (or which packages were not audited): it never says
"no vulnerabilities" for packages nobody checked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from modelfleet.errors import MissingDependencyError


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_packages(wheels: list[Path]) -> list[tuple[str, str, str]]:
    """``(name, version, sha256)`` of every wheel."""
    out = []
    for wheel in wheels:
        name, version, _, _ = parse_wheel_filename(wheel.name)
        out.append((str(name), str(version), _sha256(wheel)))
    return sorted(out)


def write_sbom(
    path: Path,
    *,
    image: str,
    packages: list[tuple[str, str, str]],
    model: str | None = None,
    model_version: str = "",
    model_sha256: str = "",
    files: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """Write a CycloneDX 1.6 JSON SBOM of the image's Python packages and its model.

    ``files`` are other payloads as ``(path in the image, sha256)``: a trainer image has a
    pipeline file and no model.
    """
    try:
        from cyclonedx.model import HashAlgorithm, HashType
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
        from packageurl import PackageURL
    except ImportError as exc:
        raise MissingDependencyError(
            "cyclonedx-python-lib", "build", purpose="write the image SBOM"
        ) from exc
    bom = Bom()
    root = Component(name=image, type=ComponentType.CONTAINER, bom_ref=f"image:{image}")
    bom.metadata.component = root
    for name, version, sha in packages:
        bom.components.add(
            Component(
                name=name,
                version=version,
                type=ComponentType.LIBRARY,
                purl=PackageURL(type="pypi", name=name, version=version),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha)],
                bom_ref=f"pypi:{name}@{version}",
            )
        )
    if model is not None:
        bom.components.add(
            Component(
                name=model,
                version=model_version,
                type=ComponentType.MACHINE_LEARNING_MODEL,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=model_sha256)],
                bom_ref=f"model:{model}@{model_version}",
            )
        )
    for name, sha in files:
        bom.components.add(
            Component(
                name=name,
                type=ComponentType.FILE,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha)],
                bom_ref=f"file:{name}",
            )
        )
    # The image contains every component directly (a flat dependency graph).
    bom.register_dependency(root, list(bom.components))
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    path.write_text(text)
    data: dict[str, Any] = json.loads(text)
    return data


def audit(
    packages: list[tuple[str, str, str]], workdir: Path, *, timeout: float = 120
) -> dict[str, Any]:
    """Run pip-audit on the pinned packages; the report says plainly what was checked."""
    requirements = workdir / "requirements.lock"
    requirements.write_text("".join(f"{n}=={v}\n" for n, v, _ in packages))
    binary = shutil.which("pip-audit") or str(Path(sys.executable).parent / "pip-audit")
    if not Path(binary).exists():
        return _not_run("pip-audit is not installed (pip install 'modelfleet[build]')", packages)
    argv = [
        binary,
        "-r",
        str(requirements),
        "--no-deps",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--timeout",
        "20",
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _not_run(f"pip-audit did not finish within {timeout:.0f} s", packages)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return _not_run(f"the vulnerability service did not answer: {reason}", packages)
    deps = report.get("dependencies", [])
    skipped = {d["name"]: d.get("skip_reason", "") for d in deps if "skip_reason" in d}
    audited = [d for d in deps if "skip_reason" not in d]
    vulns = [
        {
            "package": d["name"],
            "version": d.get("version"),
            "id": v.get("id"),
            "fix_versions": v.get("fix_versions", []),
        }
        for d in audited
        for v in d.get("vulns", [])
    ]
    if not audited:
        first = next(iter(skipped.values()), "no package could be looked up")
        return _not_run(
            f"the vulnerability service could not audit any package ({first})", packages
        )
    status = "complete" if not skipped else "partial"
    summary = f"{len(vulns)} known vulnerabilities in {len(audited)} audited packages" + (
        f"; {len(skipped)} packages NOT audited" if skipped else ""
    )
    return {
        "scanned": True,
        "status": status,
        "summary": summary,
        "audited": len(audited),
        "not_audited": skipped,
        "vulnerabilities": vulns,
    }


def _not_run(reason: str, packages: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "scanned": False,
        "status": "not-run",
        "summary": f"vulnerability scan did not run: {reason}; the {len(packages)} packages "
        "are unaudited (this is not a clean result)",
        "audited": 0,
        "not_audited": {n: reason for n, _, _ in packages},
        "vulnerabilities": [],
    }
