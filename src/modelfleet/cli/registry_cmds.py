"""Registry commands: register, models, versions, show, promote, history, artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelfleet import sdk
from modelfleet.cli.context import state
from modelfleet.cli.output import (
    VERSION_COLUMNS,
    JsonFlag,
    artifact_rows,
    console,
    emit_json,
    show_version,
    table,
    version_rows,
)
from modelfleet.datasets import read_data
from modelfleet.errors import ModelfleetError
from modelfleet.refs import parse_stage

# Mounted without a name by ``cli.app``: these commands sit at the top of ``modelfleet``.
app = typer.Typer()


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ModelfleetError(f"invalid {what} {item!r}", hint=f"write --{what} key=value")
        pairs[key.strip()] = value.strip()
    return pairs


@app.command()
def register(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help=".onnx, .skops, .pt2, TorchScript .pt (or a pickle with --trust)")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="model name")],
    sample: Annotated[
        Path | None, typer.Option(help="sample input (.npz/.npy/.csv) for signature and checks")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="metric key=value (repeatable)")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="parameter key=value (repeatable)")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="tag key=value (repeatable)")] = None,
    task: Annotated[str | None, typer.Option(help="classification, regression or other")] = None,
    training_data: Annotated[
        Path | None,
        typer.Option(
            help="training data (.npz/.npy/.csv): its sha256 is recorded as lineage and its "
            "profile is what drift is measured against"
        ),
    ] = None,
    trust: Annotated[bool, typer.Option(help="allow pickle/joblib files (they run code)")] = False,
    no_freeze: Annotated[bool, typer.Option("--no-freeze", help="store the source only")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register a model file as a new version."""
    st = state(ctx)
    sample_input = read_data(sample).features if sample else None
    with st.registry() as reg:
        version = sdk.register_file(
            file,
            name=name,
            sample_input=sample_input,
            trust=trust,
            metrics=_pairs(metric, "metric"),
            params=_pairs(param, "param"),
            tags=_pairs(tag, "tag"),
            task=task,
            training_data=training_data,
            freeze=not no_freeze,
            settings=st.settings,
            registry=reg,
        )
    if as_json:
        emit_json(version)
    else:
        frozen = "frozen to ONNX" if version.artifact("onnx") else "not frozen"
        drift = (
            "drift profile stored"
            if version.artifact("profile")
            else "no drift profile: pass --training-data FILE to monitor drift"
        )
        console.print(
            f"registered [bold]{version.ref}[/] ({version.framework}, {frozen}, {drift})",
            soft_wrap=True,
        )


@app.command()
def models(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List registered models."""
    with state(ctx).registry() as reg:
        found = reg.models()
    if as_json:
        emit_json(found)
        return
    if not found:
        console.print("no models registered yet; run 'modelfleet register FILE --name NAME'")
        return
    rows = [
        [
            m.name,
            m.latest_version,
            m.versions,
            " ".join(f"{s}={v}" for s, v in sorted(m.stages.items())),
            m.created_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for m in found
    ]
    console.print(table("models", ("name", "latest", "versions", "stages", "created"), rows))


@app.command()
def versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name")],
    as_json: JsonFlag = False,
) -> None:
    """List the versions of a model."""
    with state(ctx).registry() as reg:
        found = reg.versions(name)
    if as_json:
        emit_json(found)
    else:
        console.print(table(f"versions of {name}", VERSION_COLUMNS, version_rows(found)))


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="name, name:VERSION or name@STAGE")],
    as_json: JsonFlag = False,
) -> None:
    """Show everything recorded about a version."""
    with state(ctx).registry() as reg:
        version = reg.get(ref)
    if as_json:
        emit_json(version)
    else:
        show_version(version)


@app.command()
def artifacts(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="name, name:VERSION or name@STAGE")],
    as_json: JsonFlag = False,
) -> None:
    """List a version's artifacts with their digests and locations."""
    with state(ctx).registry() as reg:
        version = reg.get(ref)
    if as_json:
        emit_json(list(version.artifacts))
    else:
        console.print(
            table(
                f"artifacts of {version.ref}",
                ("role", "type", "size", "sha256", "uri"),
                artifact_rows(version.artifacts),
            )
        )


@app.command()
def promote(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="name:VERSION (or name@STAGE) to promote")],
    to: Annotated[str, typer.Option("--to", help="dev, qa, uat or prod")],
    require: Annotated[
        list[str] | None, typer.Option(help="metric requirement, e.g. accuracy>=0.9 (repeatable)")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="why, for the audit trail")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Point a stage at a version, if its metrics meet the requirements."""
    st = state(ctx)
    stage = parse_stage(to)
    with st.registry() as reg:
        event = reg.promote(ref, stage, require=require or [], reason=reason)
    if as_json:
        emit_json(event)
    else:
        before = f" (was {event.name}:{event.previous_version})" if event.previous_version else ""
        console.print(f"{event.name}@{event.stage} -> {event.name}:{event.version}{before}")


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name")],
    as_json: JsonFlag = False,
) -> None:
    """Show the stage audit trail of a model."""
    with state(ctx).registry() as reg:
        events = reg.history(name)
    if as_json:
        emit_json(events)
        return
    rows = [
        [
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.stage,
            e.version,
            e.previous_version or "",
            e.from_stage or "",
            e.actor,
            e.reason,
        ]
        for e in events
    ]
    console.print(
        table(
            f"stage history of {name}",
            ("when", "stage", "version", "replaced", "from", "who", "reason"),
            rows,
        )
    )
