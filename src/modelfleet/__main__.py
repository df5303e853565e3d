"""``python -m modelfleet`` runs the CLI."""

from __future__ import annotations

from modelfleet.cli import run

run()
