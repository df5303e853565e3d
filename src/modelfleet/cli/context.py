"""The global options (settings, logging) and the per-command state every command reads.

The root callback of the ``modelfleet`` app is :func:`global_options`; commands read its
result with :func:`state`. Command modules import this module, never ``cli.app``, so the
imports inside the CLI point one way: output and context at the bottom, commands above
them, the app that mounts the commands on top.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from modelfleet.cli.output import err_console
from modelfleet.config import Settings, load_settings
from modelfleet.registry import Registry


@dataclass
class State:
    """What the global options decided, shared by every command through the click context."""

    overrides: dict[str, object] = field(default_factory=dict)
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """Settings loaded once: flags > env > config file > defaults."""
        if self._settings is None:
            self._settings = load_settings(**self.overrides)
        return self._settings

    def registry(self) -> Registry:
        """Open the configured registry."""
        return Registry.open(self.settings)


def state(ctx: typer.Context) -> State:
    """The :class:`State` of the running command."""
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # pragma: no cover - the callback always sets it
        raise RuntimeError("modelfleet CLI state missing")
    return obj


def _print_version(value: bool) -> None:
    if value:
        from modelfleet import __version__

        typer.echo(f"modelfleet {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    home: Annotated[
        Path | None, typer.Option(help="registry home folder [env: MODELFLEET_HOME]")
    ] = None,
    db_url: Annotated[
        str | None, typer.Option(help="metadata database URL [env: MODELFLEET_DB_URL]")
    ] = None,
    artifacts: Annotated[
        str | None, typer.Option(help="artifact store folder or URL [env: MODELFLEET_ARTIFACTS]")
    ] = None,
    debug: Annotated[bool, typer.Option(help="show tracebacks and debug logs")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show progress logs")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="print modelfleet's version and exit",
        ),
    ] = False,
) -> None:
    """Configure logging and keep the settings overrides for the command that follows."""
    del version  # handled (eagerly) by its callback
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=debug)],
    )
    ctx.obj = State(overrides={"home": home, "db_url": db_url, "artifacts": artifacts})
