"""The ``modelfleet`` command: global options, settings, and error handling at the edge.

Exit codes: 0 success, 1 a user error reported in one line (tracebacks only with --debug),
2 a usage error (unknown option, missing argument).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from modelfleet.config import Settings, load_settings
from modelfleet.errors import ModelfleetError
from modelfleet.registry.registry import Registry

app = typer.Typer(
    name="modelfleet",
    help="Register, freeze, quantize, serve, ship and watch ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err_console = Console(stderr=True)


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


@app.callback()
def _global_options(
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
) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=debug)],
    )
    ctx.obj = State(overrides={"home": home, "db_url": db_url, "artifacts": artifacts})


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the console-script entry point)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("MODELFLEET_DEBUG") == "1"
    # Command modules register themselves on import.
    from modelfleet.cli import (  # noqa: F401
        build_cmds,
        deploy_cmds,
        freeze_cmds,
        jobs_cmds,
        monitor_cmds,
        registry_cmds,
        serve_cmds,
    )

    try:
        # Standalone mode lets typer report usage errors (exit 2) and --help itself; it ends
        # with SystemExit, and our own errors pass through it to be reported below.
        app(args=args, prog_name="modelfleet", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ModelfleetError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
