"""The ``modelfleet`` command line (typer): one module per command group."""

from __future__ import annotations

from modelfleet.cli.app import app, main, run

__all__ = ["app", "main", "run"]
