"""Rendering for people (rich tables) and for scripts (``--json``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelfleet.registry import ArtifactRecord, ModelVersion

console = Console(highlight=False)
err_console = Console(stderr=True)

# The --json flag every listing and report command takes.
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout, pydantic records included."""

    def default(obj: Any) -> Any:
        if isinstance(obj, BaseModel):
            return obj.model_dump(mode="json")
        raise TypeError(type(obj).__name__)

    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    print(json.dumps(value, indent=2, default=default, sort_keys=False))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table with the given columns."""
    # Titles and cells carry names, paths and messages: none of it is markup.
    out = Table(title=escape(title), title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(escape(column), overflow="fold")
    for row in rows:
        out.add_row(*("" if cell is None else escape(str(cell)) for cell in row))
    return out


def human_size(size: float) -> str:
    """``12.3 kB`` style sizes."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover - loop always returns


def metrics_text(metrics: dict[str, float]) -> str:
    """``accuracy=0.95 f1=0.93``."""
    return " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def latency_label(key: str) -> str:
    """``batch_4_ms`` -> ``batch 4``: the size a recorded latency was timed at."""
    if key == "fixed_shape_ms":
        return "fixed shape"
    return key.removesuffix("_ms").replace("_", " ")


def milliseconds(latency: Mapping[str, float], key: str) -> str:
    """One recorded median as text, or ``-`` when that size was not timed."""
    value = latency.get(key)
    return "-" if value is None else f"{value:.3f}"


def latency_text(version: ModelVersion) -> str:
    """Median latency at batch 1 / 64 from the freeze or quantize record.

    A graph fixed to other row counts is timed only at those: they are shown by name.
    """
    record = version.verification or {}
    latency = record.get("latency") or record.get("latency_after") or {}
    if not latency:
        return ""
    usual = ("batch_1_ms", "batch_64_ms")
    if set(latency) <= set(usual):
        return " / ".join(milliseconds(latency, key) for key in usual)
    return ", ".join(f"{latency_label(key)}: {milliseconds(latency, key)}" for key in latency)


def onnx_size(version: ModelVersion) -> str:
    """Size of the version's ONNX graph."""
    art = version.artifact("onnx")
    return human_size(art.size) if art else "not frozen"


def version_rows(versions: Sequence[ModelVersion]) -> list[list[Any]]:
    """Rows of the versions table."""
    return [
        [
            v.version,
            v.variant.value,
            v.framework,
            v.task.value,
            ",".join(v.stages),
            onnx_size(v),
            metrics_text(v.metrics),
            latency_text(v),
            v.lineage.parent_version or "",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for v in versions
    ]


VERSION_COLUMNS = (
    "version",
    "variant",
    "framework",
    "task",
    "stages",
    "onnx size",
    "metrics",
    "ms b1 / b64",
    "parent",
    "created",
)


def artifact_rows(artifacts: Sequence[ArtifactRecord]) -> list[list[Any]]:
    """Rows of the artifacts table."""
    return [[a.role, a.media_type, human_size(a.size), a.sha256[:16], a.uri] for a in artifacts]


def show_version(version: ModelVersion) -> None:
    """Everything recorded about a version, for people."""
    console.print(
        f"[bold]{escape(version.ref)}[/]  ({escape(version.framework)} "
        f"{escape(version.framework_version)}, {version.task.value}, {version.variant.value})"
    )
    lineage = version.lineage.model_dump(exclude_none=True, exclude_defaults=True)
    fields = {
        "stages": ", ".join(version.stages) or "-",
        "signature": version.signature.describe(),
        "metrics": metrics_text(version.metrics) or "-",
        "params": json.dumps(version.params) if version.params else "-",
        "tags": json.dumps(version.tags) if version.tags else "-",
        "lineage": json.dumps(lineage) if lineage else "-",
        "created": f"{version.created_at.isoformat()} by {version.created_by}",
    }
    if version.verification:
        fields["freeze"] = json.dumps(version.verification)
    for label, text in fields.items():
        console.print(f"  {label + ':':<11} {escape(text)}")
    console.print(
        table(
            "artifacts", ("role", "type", "size", "sha256", "uri"), artifact_rows(version.artifacts)
        )
    )
