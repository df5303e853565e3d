"""Build contexts: one image per model x version x environment, least privilege, hermetic.

The context holds a Containerfile, the wheels of ``modelfleet[serve]``, the one ONNX graph
(sha256 checked by the build and again by the server at start), the serve config, an SBOM
and a vulnerability report. The image runs as an unprivileged numeric user, needs only a
writable /tmp, and answers its HEALTHCHECK on the V2 readiness endpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelfleet import __version__
from modelfleet.build.engines import ImageEngine, ImageInfo
from modelfleet.build.sbom import audit, wheel_packages, write_sbom
from modelfleet.build.wheels import resolve_wheels
from modelfleet.errors import BuildError
from modelfleet.refs import Stage
from modelfleet.registry import ModelVersion, Registry, Role, git_state
from modelfleet.serving import (
    ModelConfig,
    MonitoringConfig,
    ServeConfig,
    ServerConfig,
    WatchConfig,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/modelfleet-base:bookworm"
PORT = 8080
UID = 10001
MODEL_PATH = "/opt/modelfleet/model.onnx"
PROFILE_PATH = "/opt/modelfleet/profile.json"
# Predictions and logs live on the pod's 64 MiB in-memory /tmp: keep them well inside.
IMAGE_MONITORING = MonitoringConfig(max_predictions=100_000, log_max_bytes=4 << 20, log_backups=1)
CONFIG_PATH = "/etc/modelfleet/serve.yaml"
# A path component of an image name (OCI distribution spec) is lower-case runs joined by
# '.', '_', '__' or dashes. Names that contain no '_' and are valid as they are were used
# unchanged before (the old mapping only lowered case and turned '_' into '-'), so their
# images keep their tags; every other name needs a suffix to stay apart from them.
_PLAIN_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|-+)[a-z0-9]+)*")
_NOT_IN_COMPONENT = re.compile(r"[^a-z0-9]+")


@dataclass
class BuildPlan:
    """Everything an image is made from, decided before anything is written."""

    version: ModelVersion
    environment: Stage
    base: str
    tag: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    """What ``modelfleet build`` reports."""

    context: Path
    tag: str
    engine: str | None
    image: ImageInfo | None
    sbom_components: int
    vulnerability_summary: str
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "context": str(self.context),
            "tag": self.tag,
            "engine": self.engine,
            "digest": self.image.digest if self.image else None,
            "size_bytes": self.image.size if self.image else None,
            "sbom_components": self.sbom_components,
            "vulnerabilities": self.vulnerability_summary,
            "labels": self.labels,
        }


def image_tag(
    version: ModelVersion, environment: Stage, repository: str = "localhost/modelfleet"
) -> str:
    """``localhost/modelfleet/<name>:<version>-<environment>``: one tag per image identity."""
    return f"{repository}/{image_component(version.name)}:{version.version}-{environment.value}"


def image_component(model: str) -> str:
    """The image repository component of a name: a different one for each model name.

    A lower-case name that is already a valid component is used as it is, so the images of
    such models keep their tags. Any other name ('Churn-A', 'churn_a', 'churn-', 'churn..v2')
    is cleaned to lower-case words joined by '-' and ends in 8 hex of its sha256: the
    registry keeps those names apart, so their images must not overwrite each other.
    """
    if _PLAIN_COMPONENT.fullmatch(model):
        return model
    cleaned = _NOT_IN_COMPONENT.sub("-", model.lower()).strip("-")
    digest = hashlib.sha256(model.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned}-{digest}" if cleaned else digest


def plan_build(
    version: ModelVersion, environment: Stage, *, base: str, tag: str | None = None
) -> BuildPlan:
    """Decide tag and labels for an image of ``version`` in ``environment``."""
    onnx = version.artifact(Role.ONNX)
    if onnx is None:
        raise BuildError(
            f"{version.ref} has no ONNX graph to serve",
            hint=f"run 'modelfleet freeze {version.ref}'",
        )
    commit, _ = git_state()
    labels = {
        "org.opencontainers.image.title": f"modelfleet {version.name}",
        "org.opencontainers.image.version": f"{version.version}-{environment.value}",
        "org.opencontainers.image.base.name": base,
        "org.opencontainers.image.revision": commit or "unknown",
        "io.modelfleet.model": version.name,
        "io.modelfleet.model.version": str(version.version),
        "io.modelfleet.model.variant": version.variant.value,
        "io.modelfleet.environment": environment.value,
        "io.modelfleet.artifact.sha256": onnx.sha256,
        "io.modelfleet.version": __version__,
    }
    return BuildPlan(version, environment, base, tag or image_tag(version, environment), labels)


def containerfile(plan: BuildPlan, *, profile: bool = False) -> str:
    """The Containerfile text; every line is fixed by the plan, so rebuilds hit the cache."""
    profile_copy = f"COPY profile.json {PROFILE_PATH}\n" if profile else ""
    onnx = plan.version.artifact(Role.ONNX)
    assert onnx is not None  # plan_build refuses versions without a graph
    label_lines = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in sorted(plan.labels.items()))
    health = json.dumps(
        [
            "/opt/venv/bin/python",
            "-c",
            "import urllib.request; urllib.request.urlopen("
            f"'http://127.0.0.1:{PORT}/v2/health/ready', timeout=2)",
        ]
    )
    entry = json.dumps(
        ["/opt/venv/bin/python", "-m", "modelfleet.serving", "--config", CONFIG_PATH]
    )
    origin = f"{plan.version.ref} ({plan.environment.value})"
    return f"""# Generated by modelfleet {__version__} for {origin}.
# Hermetic: everything is installed from wheels/ with --no-index; nothing is downloaded.
# The install stage also drops what the server never loads (tests, type stubs, C headers,
# numpy's lazily imported random/fft/polynomial/ma/testing/typing, ONNX Runtime's offline
# tools) and strips extension modules when binutils is there.
FROM {plan.base} AS install
COPY wheels/ /wheels/
RUN python3 -m venv --without-pip /opt/venv \\
 && PIP="python3 /wheels/$(cd /wheels && ls pip-*.whl)/pip --python /opt/venv/bin/python" \\
 && $PIP install --no-index --no-compile --find-links /wheels --no-deps modelfleet \\
 && $PIP install --no-index --no-compile --find-links /wheels -r /wheels/runtime.txt \\
 && cd /opt/venv/lib/python3*/site-packages \\
 && rm -rf numpy/*/tests numpy/tests numpy/f2py numpy/distutils numpy/_pyinstaller \\
      numpy/random numpy/fft numpy/polynomial numpy/ma numpy/testing numpy/typing \\
      onnxruntime/transformers onnxruntime/quantization onnxruntime/tools \\
      onnxruntime/datasets onnxruntime/backend \\
 && find /opt/venv -depth \\( -name '__pycache__' -o -name include -o -name _examples \\) \\
      -type d -exec rm -rf {{}} + \\
 && find /opt/venv \\( -name '*.pyi' -o -name '*.h' -o -name '*.pxd' -o -name '*.pyx' \\) \\
      -type f -delete \\
 && if command -v strip >/dev/null; then \\
      find /opt/venv -name '*.cpython-*.so' -type f -exec strip --strip-unneeded {{}} + ; fi

FROM {plan.base}
LABEL {label_lines}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    MODELFLEET_HOME=/tmp/modelfleet MODELFLEET_ENVIRONMENT={plan.environment.value}
COPY --from=install /opt/venv /opt/venv
COPY model.onnx {MODEL_PATH}
{profile_copy}COPY serve.yaml {CONFIG_PATH}
RUN echo "{onnx.sha256}  {MODEL_PATH}" | sha256sum -c -
USER {UID}:{UID}
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD {health}
ENTRYPOINT {entry}
"""


def image_model(
    *,
    name: str,
    sha256: str,
    version: str,
    variant: str,
    metrics: dict[str, float],
    profile: bool,
) -> ModelConfig:
    """The served model of an image: its graph and profile at their fixed paths, pinned."""
    fields: dict[str, Any] = {
        "ref": MODEL_PATH,
        "name": name,
        "sha256": sha256,
        "version": version,
        "variant": variant,  # checked against the variants the server knows
        "metrics": dict(metrics),
        "follow": False,
    }
    if profile:
        fields["watch"] = WatchConfig(profile=PROFILE_PATH)
    return ModelConfig.model_validate(fields)


def serve_config(version: ModelVersion, *, profile: bool = False) -> ServeConfig:
    """The serve config baked into the image (file reference, verified digest)."""
    onnx = version.artifact(Role.ONNX)
    assert onnx is not None  # plan_build refuses versions without a graph
    model = image_model(
        name=version.name,
        sha256=onnx.sha256,
        version=str(version.version),
        variant=version.variant.value,
        metrics=version.metrics,
        profile=profile,
    )
    return ServeConfig(
        server=ServerConfig(host="0.0.0.0", port=PORT, workers=1),  # noqa: S104 - inside a container
        monitoring=IMAGE_MONITORING,
        models=(model,),
    )


def serve_yaml(config: ServeConfig) -> str:
    """The YAML text of a serve config as images and ConfigMaps carry it.

    Only the fields that were set are written: every other setting takes the default of the
    modelfleet inside the image, and a server older than the CLI that rendered the file
    never meets a field it does not know (the config refuses unknown fields).
    """
    data = config.model_dump(mode="json", exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=True)


def writable_context(out: Path) -> None:
    """Create ``out`` and prove it writable before anything slow (wheels) is fetched."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".modelfleet-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BuildError(
            f"cannot write the build context to {out}: {exc.strerror}",
            hint="choose a writable folder with --out",
        ) from exc


def write_context(plan: BuildPlan, registry: Registry, out: Path, *, cache: Path) -> dict[str, Any]:
    """Write the build context to ``out``; returns the SBOM and scan report."""
    writable_context(out)
    version = plan.version
    registry.fetch_artifact(version, Role.ONNX, out / "model.onnx")  # sha256 verified
    # The image runs as an unprivileged user: the graph must be world-readable there.
    (out / "model.onnx").chmod(0o644)
    wheels_dir = out / "wheels"
    if wheels_dir.exists():
        shutil.rmtree(wheels_dir)
    wheels = resolve_wheels(wheels_dir, cache)
    profile = registry.reference_profile(version)
    (out / "profile.json").unlink(missing_ok=True)
    if profile is not None:
        (out / "profile.json").write_bytes(profile)  # drift is measured against it
        (out / "profile.json").chmod(0o644)
    config = serve_config(version, profile=profile is not None)
    (out / "serve.yaml").write_text(serve_yaml(config))
    (out / "Containerfile").write_text(containerfile(plan, profile=profile is not None))
    (out / ".dockerignore").write_text("sbom.cdx.json\nvulnerabilities.json\nbuild.json\n")
    packages = wheel_packages(wheels)
    onnx = version.artifact(Role.ONNX)
    assert onnx is not None  # plan_build refuses versions without a graph
    sbom = write_sbom(
        out / "sbom.cdx.json",
        image=plan.tag,
        packages=packages,
        model=version.name,
        model_version=str(version.version),
        model_sha256=onnx.sha256,
    )
    report = audit(packages, out)
    (out / "vulnerabilities.json").write_text(json.dumps(report, indent=2))
    (out / "build.json").write_text(
        json.dumps(
            {
                "ref": version.ref,
                "environment": plan.environment.value,
                "tag": plan.tag,
                "base": plan.base,
                "labels": plan.labels,
                "wheels": {n: {"version": v, "sha256": s} for n, v, s in packages},
            },
            indent=2,
        )
    )
    return {"sbom": sbom, "audit": report}


def build(
    registry: Registry,
    ref: str,
    environment: Stage,
    *,
    out: Path,
    cache: Path,
    engine: ImageEngine | None,
    base: str = DEFAULT_BASE,
    variant: str | None = None,
    tag: str | None = None,
) -> BuildResult:
    """Write the context for ``ref`` in ``environment`` and build it when an engine exists."""
    version = registry.get(ref)
    if variant and version.variant.value != variant:
        children = [
            v
            for v in registry.versions(version.name)
            if v.lineage.parent_version == version.version and v.variant.value == variant
        ]
        if not children:
            raise BuildError(
                f"{version.ref} has no {variant} variant",
                hint=f"create one with 'modelfleet quantize {version.ref} --to {variant}'",
            )
        version = children[-1]
    plan = plan_build(version, environment, base=base, tag=tag)
    written = write_context(plan, registry, out, cache=cache)
    image = engine.build(out, plan.tag) if engine is not None else None
    return BuildResult(
        context=out,
        tag=plan.tag,
        engine=engine.name if engine else None,
        image=image,
        sbom_components=len(written["sbom"].get("components", [])),
        vulnerability_summary=written["audit"]["summary"],
        labels=plan.labels,
    )
