"""Image commands: build, base-image, run-local."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from modelfleet.cli.context import State, state
from modelfleet.cli.output import JsonFlag, console, emit_json, human_size
from modelfleet.errors import BuildError
from modelfleet.refs import parse_stage

if TYPE_CHECKING:
    from modelfleet.build import BuildResult

# Mounted without a name by ``cli.app``: these commands sit at the top of ``modelfleet``.
app = typer.Typer()

EnvOption = Annotated[str, typer.Option("--env", help="dev, qa, uat or prod")]


@app.command()
def build(
    ctx: typer.Context,
    ref: Annotated[
        str | None, typer.Argument(help="name, name:VERSION or name@STAGE (a model image)")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="dev, qa, uat or prod")] = None,
    trainer: Annotated[
        Path | None,
        typer.Option(help="build a trainer image for this pipeline file instead (Kubernetes jobs)"),
    ] = None,
    with_torch: Annotated[
        bool | None,
        typer.Option(
            "--with-torch/--without-torch",
            help="trainer: install modelfleet[torch] [default: if the pipeline imports torch]",
        ),
    ] = None,
    variant: Annotated[str | None, typer.Option(help="fp32, fp16 or int8 child")] = None,
    base: Annotated[str | None, typer.Option(help="base image (python3.11 on Debian)")] = None,
    engine: Annotated[str, typer.Option(help="auto, podman, docker, buildah or none")] = "auto",
    tag: Annotated[
        str | None,
        typer.Option(help="image tag (default encodes model, version, env; or pipeline, sha256)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="build context folder")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build REF's image for an environment, or with --trainer a pipeline's training image."""
    from modelfleet.build import DEFAULT_BASE, find_engine
    from modelfleet.build import build as build_image

    st = state(ctx)
    # Two kinds of image, one verb: a malformed mix is a usage error (exit 2), as typer's own.
    if trainer is not None:
        if ref is not None or env is not None or variant is not None:
            raise typer.BadParameter(
                "it builds a pipeline's image; REF, --env and --variant are for model images",
                param_hint="'--trainer'",
            )
        _report(_build_trainer(st, trainer, base, engine, tag, out, with_torch), as_json)
        return
    if ref is None or env is None:
        raise typer.BadParameter(
            "a model image needs REF and --env (a pipeline's image: --trainer PIPELINE.py)",
            param_hint="'--env'" if ref is not None else "'REF'",
        )
    if with_torch is not None:
        raise typer.BadParameter("only for --trainer builds", param_hint="'--with-torch'")
    stage = parse_stage(env)
    chosen = find_engine(engine)
    with st.registry() as reg:
        version = reg.get(ref)
        folder = (
            out or st.settings.home / "builds" / f"{version.name}-{version.version}-{stage.value}"
        )
        result = build_image(
            reg,
            ref,
            stage,
            out=folder,
            cache=st.settings.home / "build-cache",
            engine=chosen,
            base=base or DEFAULT_BASE,
            variant=variant,
            tag=tag,
        )
    _report(result, as_json)


def _build_trainer(
    st: State,
    pipeline: Path,
    base: str | None,
    engine: str,
    tag: str | None,
    out: Path | None,
    torch: bool | None,
) -> BuildResult:
    from modelfleet.build import DEFAULT_BASE, PipelineFile, build_trainer, find_engine

    chosen = find_engine(engine)
    file = PipelineFile.read(pipeline)
    folder = out or st.settings.home / "builds" / f"trainer-{pipeline.stem}-{file.sha256[:12]}"
    return build_trainer(
        pipeline,
        out=folder,
        cache=st.settings.home / "build-cache",
        engine=chosen,
        base=base or DEFAULT_BASE,
        tag=tag,
        torch=torch,
    )


def _report(result: BuildResult, as_json: bool) -> None:
    """What a build made: the context, SBOM, scan, and the image with its size."""
    if as_json:
        emit_json(result.as_dict())
        return
    console.print(f"build context: {result.context}", markup=False)
    console.print(f"SBOM: {result.sbom_components} components (sbom.cdx.json)")
    console.print(f"scan: {result.vulnerability_summary}", markup=False)
    if result.image is None:
        console.print(
            "no container engine found (podman, docker with a daemon, buildah): the context "
            f"is ready; build it with: podman build -f {result.context}/Containerfile "
            f"-t {result.tag} {result.context}"
        )
        return
    console.print(
        f"built [bold]{result.tag}[/] with {result.engine}: {result.image.digest} "
        f"({human_size(result.image.size)})"
    )


@app.command("base-image")
def base_image(
    suite: Annotated[str, typer.Option(help="Debian suite")] = "bookworm",
    tag: Annotated[str | None, typer.Option(help="image tag")] = None,
    engine: Annotated[str, typer.Option(help="podman or docker")] = "podman",
) -> None:
    """Make a local base image (Debian minbase + python3) for machines without a registry."""
    from modelfleet.build import find_engine, make_base_image

    chosen = find_engine(engine)
    if chosen is None:  # pragma: no cover - find_engine raises for a named engine
        raise BuildError(f"{engine} is not available")
    info = make_base_image(chosen, suite=suite, tag=tag)
    console.print(f"imported {info.tag}: {info.digest} ({human_size(info.size)})")


@app.command("run-local")
def run_local(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="name, name:VERSION or name@STAGE")],
    env: EnvOption,
    engine: Annotated[str, typer.Option(help="podman or docker")] = "podman",
    tag: Annotated[str | None, typer.Option(help="image tag (default: the build's tag)")] = None,
    port: Annotated[int | None, typer.Option(help="host port on 127.0.0.1")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run REF's image locally (non-root, read-only), send it a V2 request, print the answer."""
    from modelfleet.build import image_tag, run_container
    from modelfleet.client import Client
    from modelfleet.datasets import decode_sample
    from modelfleet.serving import warmup_inputs
    from modelfleet.signature import prepare_inputs

    st = state(ctx)
    stage = parse_stage(env)
    with st.registry() as reg:
        version = reg.get(ref)
        sample = (
            decode_sample(reg.read_artifact(version, "sample"))
            if version.artifact("sample")
            else None
        )
    inputs = (
        {k: v[:1] for k, v in prepare_inputs(version.signature, sample).items()}
        if sample is not None
        else warmup_inputs(version.signature)
    )
    with run_container(engine, tag or image_tag(version, stage), port=port) as container:
        with Client(container.url) as client:
            meta = client.metadata(version.name)
            outputs = client.predict(version.name, inputs)
        user = container.exec("id", "-u").stdout.strip()
    answer = {name: np.asarray(value).tolist() for name, value in outputs.items()}
    if as_json:
        emit_json(
            {"url": container.url, "version": meta["versions"], "user": user, "outputs": answer}
        )
        return
    console.print(
        f"{version.ref} ({stage.value}) answered at {container.url} as uid {user}:", markup=False
    )
    for name, value in answer.items():
        console.print(f"  {name}: {value}", markup=False)
