"""Garbage collection: list (and with --delete remove) artifacts nothing references."""

from __future__ import annotations

from typing import Annotated

import typer

from modelfleet.cli.context import state
from modelfleet.cli.output import JsonFlag, console, emit_json, human_size
from modelfleet.registry import GC_DEFAULT_AGE_S, GcReport, collect_garbage

# Mounted without a name by ``cli.app``: this command sits at the top of ``modelfleet``.
app = typer.Typer()


def _age(seconds: float) -> str:
    """``45 min``, ``3.0 h``, ``2.5 d``."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@app.command()
def gc(
    ctx: typer.Context,
    delete: Annotated[
        bool, typer.Option("--delete", help="remove the files (default: only list them)")
    ] = False,
    min_age: Annotated[
        float,
        typer.Option(
            help="seconds an unreferenced file must be old before it counts as garbage "
            "(younger ones may be registrations in flight; 60 at least)"
        ),
    ] = GC_DEFAULT_AGE_S,
    as_json: JsonFlag = False,
) -> None:
    """Find artifacts no version, job log or cached step references, and killed writes' files."""
    with state(ctx).registry() as reg:
        report = collect_garbage(reg, delete=delete, min_age_s=min_age)
    if as_json:
        emit_json(_as_dict(report, min_age))
    else:
        _show(report, min_age)


def _as_dict(report: GcReport, min_age: float) -> dict[str, object]:
    return {
        "store": report.store,
        "deleted": report.deleted,
        "min_age_s": min_age,
        "files": [
            {"key": g.key, "kind": g.kind, "size": g.size, "age_s": round(g.age_s, 1)}
            for g in report.garbage
        ],
        "size": report.size,
        "kept": {"referenced": report.referenced, "young": report.young, "undated": report.undated},
    }


def _show(report: GcReport, min_age: float) -> None:
    count, size = len(report.garbage), human_size(report.size)
    if report.deleted:
        console.print(
            f"deleted {count} files ({size}) from {report.store}", soft_wrap=True, markup=False
        )
    elif count:
        console.print(
            f"would delete {count} files ({size}) from {report.store}; "
            "run 'modelfleet gc --delete' to delete them",
            soft_wrap=True,
            markup=False,
        )
    else:
        console.print(f"nothing to delete in {report.store}", soft_wrap=True, markup=False)
    for g in report.garbage:  # one unwrapped line each: keys stay whole to copy or grep
        line = f"  {g.kind:<9} {human_size(g.size):>9} {_age(g.age_s):>8}  {g.key}"
        console.print(line, soft_wrap=True, markup=False)
    kept = f"kept {report.referenced} referenced artifacts"
    if report.young:
        kept += f", {report.young} unreferenced files younger than {_age(min_age)}"
    if report.undated:
        kept += f", {report.undated} files the store gives no age for"
    console.print(kept, soft_wrap=True, markup=False)
