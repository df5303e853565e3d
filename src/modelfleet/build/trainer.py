"""Trainer images: a pipeline file and the training stack, for Kubernetes Jobs to run.

A Kubernetes Job's pod cannot see the file that was submitted on a laptop, so the pipeline
travels in an image: ``modelfleet build --trainer churn.py`` installs ``modelfleet[train,
postgres,s3]`` (and ``[torch]`` when the pipeline imports torch) from wheels resolved here,
puts the file at ``/opt/modelfleet/pipeline/churn.py`` and labels the image with its sha256.
``jobs submit`` names the same image from the same file and passes the digest to the pod,
whose runner refuses a file that differs. Like the serving image: hermetic (``--no-index``),
uid 10001, only ``/tmp`` needs to be writable.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelfleet import __version__
from modelfleet.build.context import DEFAULT_BASE, UID, BuildResult, writable_context
from modelfleet.build.engines import ImageEngine
from modelfleet.build.pipeline_file import PipelineFile
from modelfleet.build.sbom import audit, wheel_packages, write_sbom
from modelfleet.build.wheels import download_wheels, modelfleet_wheel
from modelfleet.errors import BuildError
from modelfleet.registry import git_state

TRAINER_EXTRAS = ("train", "postgres", "s3")


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in ("", *sorted(extras)))


def _pinned(requirement: Requirement) -> str:
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise BuildError(
            f"{requirement.name} is not installed here, so the version the image needs is unknown",
            hint="install the training stack first: pip install 'modelfleet[train,postgres,s3]'"
            " (and 'modelfleet[torch]' for torch pipelines)",
        ) from exc
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}=={version}"


def trainer_requirements(*, torch: bool) -> list[str]:
    """modelfleet's base dependencies and its training extras, pinned to this machine."""
    extras = {*TRAINER_EXTRAS, *(("torch",) if torch else ())}
    declared = [Requirement(line) for line in importlib.metadata.requires("modelfleet") or []]
    own = [r for r in declared if canonicalize_name(r.name) == "modelfleet"]
    # `train` asks for `modelfleet[onnx]`: follow such self-references until nothing grows.
    while grown := {e for r in own if _applies(r, extras) for e in r.extras} - extras:
        extras |= grown
    return sorted({_pinned(r) for r in declared if r not in own and _applies(r, extras)})


@dataclass(frozen=True)
class TrainerPlan:
    """Everything a trainer image is made from, decided before anything is written."""

    pipeline: PipelineFile
    torch: bool
    base: str
    tag: str
    requirements: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def plan_trainer(
    pipeline: PipelineFile,
    *,
    base: str = DEFAULT_BASE,
    tag: str | None = None,
    torch: bool | None = None,
    source_dir: Path | None = None,
) -> TrainerPlan:
    """Tag, labels and requirements; ``torch=None`` installs torch when the pipeline imports it."""
    with_torch = pipeline.imports_torch if torch is None else torch
    commit, _ = git_state(source_dir)
    labels = {
        "org.opencontainers.image.title": f"modelfleet trainer {pipeline.name}",
        "org.opencontainers.image.version": pipeline.sha256[:12],
        "org.opencontainers.image.base.name": base,
        "org.opencontainers.image.revision": commit or "unknown",
        "io.modelfleet.pipeline": pipeline.name,
        "io.modelfleet.pipeline.path": pipeline.in_image,
        "io.modelfleet.pipeline.sha256": pipeline.sha256,
        "io.modelfleet.torch": str(with_torch).lower(),
        "io.modelfleet.version": __version__,
    }
    return TrainerPlan(
        pipeline,
        with_torch,
        base,
        tag or pipeline.tag(),
        trainer_requirements(torch=with_torch),
        labels,
    )


def trainer_containerfile(plan: TrainerPlan) -> str:
    """The Containerfile: the stack, then modelfleet, then the pipeline, each its own layer."""
    path = plan.pipeline.in_image
    labels = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in sorted(plan.labels.items()))
    pip = 'PIP="python3 /wheels/$(cd /wheels && ls pip-*.whl)/pip --python /opt/venv/bin/python"'
    entry = json.dumps(["/opt/venv/bin/python", "-m", "modelfleet"])
    command = json.dumps(["pipeline", "run", path])
    compile_ = "/opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash"
    origin = f"{plan.pipeline.name} (sha256 {plan.pipeline.sha256})"
    return f"""# Generated by modelfleet {__version__} for {origin}.
# Hermetic: everything is installed from wheels/ and own/ with --no-index; nothing is
# downloaded. The stack is installed before modelfleet and both before the pipeline, so a
# new pipeline (or modelfleet) reuses the cached layers below it. Tests and test data,
# headers and stubs are dropped; extension modules are stripped when binutils is there.
# Bytecode is compiled here (hash-based, never checked against the immutable sources): a
# pod's read-only root cannot cache it, and every job would compile the stack again. It is
# only a head start, so a module that does not compile does not fail the build.
FROM {plan.base} AS install
COPY wheels/ /wheels/
RUN python3 -m venv --without-pip /opt/venv \\
 && {pip} \\
 && $PIP install --no-index --no-compile --find-links /wheels -r /wheels/requirements.txt \\
 && cd /opt/venv/lib/python3*/site-packages \\
 && rm -rf onnx/backend/test/data \\
 && find . -mindepth 2 -depth -type d -name tests -exec rm -rf {{}} + \\
 && find /opt/venv -depth -type d \\( -name __pycache__ -o -name include \\) \\
      -exec rm -rf {{}} + \\
 && find /opt/venv \\( -name '*.pyi' -o -name '*.h' -o -name '*.pxd' -o -name '*.pyx' \\) \\
      -type f -delete \\
 && if command -v strip >/dev/null; then \\
      find /opt/venv -name '*.cpython-*.so' -type f -exec strip --strip-unneeded {{}} + ; fi \\
 && ({compile_} . || true)
COPY own/ /own/
RUN {pip} \\
 && $PIP install --no-index --no-compile --no-deps /own/modelfleet-*.whl \\
 && cd /opt/venv/lib/python3*/site-packages \\
 && ({compile_} modelfleet || true)

FROM {plan.base}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \\
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    MODELFLEET_HOME=/tmp/modelfleet
COPY --from=install /opt/venv /opt/venv
COPY pipeline/{plan.pipeline.name} {path}
RUN echo "{plan.pipeline.sha256}  {path}" | sha256sum -c -
LABEL {labels}
ENV MODELFLEET_PIPELINE={path}
USER {UID}:{UID}
ENTRYPOINT {entry}
CMD {command}
"""


def write_trainer_context(
    plan: TrainerPlan, out: Path, *, own: Path, wheels: list[Path]
) -> dict[str, Any]:
    """Write the context: the wheels given, modelfleet's own, the pipeline, Containerfile, SBOM."""
    writable_context(out)
    for folder in ("wheels", "own", "pipeline"):
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, out / "wheels" / wheel.name)
    shutil.copyfile(own, out / "own" / own.name)
    (out / "wheels" / "requirements.txt").write_text("\n".join(plan.requirements) + "\n")
    copied = out / "pipeline" / plan.pipeline.name
    copied.write_bytes(plan.pipeline.source)
    copied.chmod(0o644)  # read by uid 10001 in the image
    (out / "Containerfile").write_text(trainer_containerfile(plan))
    (out / ".dockerignore").write_text(
        "sbom.cdx.json\nvulnerabilities.json\nbuild.json\nrequirements.lock\n"
    )
    packages = wheel_packages([out / "own" / own.name, *(out / "wheels" / w.name for w in wheels)])
    sbom = write_sbom(
        out / "sbom.cdx.json",
        image=plan.tag,
        packages=packages,
        files=((plan.pipeline.in_image, plan.pipeline.sha256),),
    )
    (out / "build.json").write_text(
        json.dumps(
            {
                "pipeline": plan.pipeline.name,
                "sha256": plan.pipeline.sha256,
                "torch": plan.torch,
                "tag": plan.tag,
                "base": plan.base,
                "labels": plan.labels,
                "wheels": {n: {"version": v, "sha256": s} for n, v, s in packages},
            },
            indent=2,
        )
    )
    return {"sbom": sbom, "packages": packages}


def build_trainer(
    path: Path,
    *,
    out: Path,
    cache: Path,
    engine: ImageEngine | None,
    base: str = DEFAULT_BASE,
    tag: str | None = None,
    torch: bool | None = None,
) -> BuildResult:
    """Write the trainer context for the pipeline at ``path``; build it when an engine exists."""
    plan = plan_trainer(
        PipelineFile.read(path), base=base, tag=tag, torch=torch, source_dir=path.parent
    )
    writable_context(out)  # before minutes of wheel downloads, not after
    own = modelfleet_wheel(cache / "own")
    wheels = download_wheels(plan.requirements, cache, what="resolving the training wheels")
    written = write_trainer_context(plan, out, own=own, wheels=wheels)
    report = audit(written["packages"], out)
    (out / "vulnerabilities.json").write_text(json.dumps(report, indent=2))
    image = engine.build(out, plan.tag) if engine is not None else None
    return BuildResult(
        context=out,
        tag=plan.tag,
        engine=engine.name if engine else None,
        image=image,
        sbom_components=len(written["sbom"].get("components", [])),
        vulnerability_summary=report["summary"],
        labels=plan.labels,
    )
