"""Freeze and quantize commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelfleet import sdk
from modelfleet.cli.context import state
from modelfleet.cli.output import (
    JsonFlag,
    console,
    emit_json,
    err_console,
    human_size,
    latency_label,
    milliseconds,
    table,
)
from modelfleet.datasets import read_data
from modelfleet.errors import AccuracyDropError

# Mounted without a name by ``cli.app``: these commands sit at the top of ``modelfleet``.
app = typer.Typer()


@app.command()
def freeze(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="version registered without a graph")],
    atol: Annotated[float | None, typer.Option(help="allowed max abs difference")] = None,
    min_agreement: Annotated[
        float | None, typer.Option(help="required share of identical labels")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Convert a version's source model to a verified ONNX graph."""
    st = state(ctx)
    with st.registry() as reg:
        version = sdk.freeze_version(
            ref, atol=atol, min_agreement=min_agreement, settings=st.settings, registry=reg
        )
    if as_json:
        emit_json(version)
        return
    record = version.verification or {}
    console.print(
        f"froze [bold]{version.ref}[/]: max_abs_diff={record.get('max_abs_diff', 0):.3g}"
        + (
            f" label_agreement={record['label_agreement']:.4f}"
            if "label_agreement" in record
            else ""
        )
    )


def figures_table(title: str, figures: dict[str, Any]) -> Any:
    """Before/after table of a quantization, one latency row per batch size timed."""
    lat_b, lat_a = figures.get("latency_before", {}), figures.get("latency_after", {})
    timed = list(dict.fromkeys([*lat_b, *lat_a])) or ["batch_1_ms", "batch_64_ms"]
    rows = [
        ["size", human_size(figures["size_bytes_before"]), human_size(figures["size_bytes_after"])],
        [figures["metric"], f"{figures['metric_before']:.4f}", f"{figures['metric_after']:.4f}"],
        *(
            [f"ms {latency_label(key)}", milliseconds(lat_b, key), milliseconds(lat_a, key)]
            for key in timed
        ),
    ]
    return table(title, ("", "before (fp32)", f"after ({figures['variant']})"), rows)


@app.command()
def quantize(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="fp32 version to quantize")],
    to: Annotated[str, typer.Option("--to", help="fp16 or int8")],
    eval_file: Annotated[
        Path | None,
        typer.Option("--eval", help="evaluation data (.npz X/y, .csv with a label column)"),
    ] = None,
    label: Annotated[str | None, typer.Option(help="label column/array in --eval")] = None,
    max_drop: Annotated[float | None, typer.Option(help="allowed metric drop")] = None,
    method: Annotated[str, typer.Option(help="int8 method: dynamic or static")] = "dynamic",
    as_json: JsonFlag = False,
) -> None:
    """Create an fp16/int8 version if its metric stays within --max-drop of the parent."""
    st = state(ctx)
    data = read_data(eval_file, label=label) if eval_file else None
    try:
        with st.registry() as reg:
            version = sdk.quantize(
                ref,
                to=to,
                method=method,
                eval_data=data,
                max_drop=max_drop,
                settings=st.settings,
                registry=reg,
            )
    except AccuracyDropError as exc:
        if exc.figures:
            err_console.print(figures_table(f"{ref} -> {to} (refused)", exc.figures))
        raise
    if as_json:
        emit_json(version)
        return
    figures = version.verification or {}
    console.print(figures_table(f"{ref} -> {version.ref}", figures))
    console.print(f"created [bold]{version.ref}[/] ({version.variant.value}, parent {ref})")
