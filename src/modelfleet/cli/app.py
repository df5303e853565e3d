"""The ``modelfleet`` command: mounts every command group and reports errors at the edge.

Exit codes: 0 success, 1 a user error reported in one line (tracebacks only with --debug),
2 a usage error (unknown option, missing argument).

This module sits on top of the CLI: it imports the command modules and mounts their
sub-apps, and nothing in ``modelfleet.cli`` imports it back except the entry points
(``modelfleet.cli`` and ``python -m modelfleet``). ``app`` is complete once imported.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from rich.markup import escape

from modelfleet.cli import (
    build_cmds,
    deploy_cmds,
    freeze_cmds,
    gc_cmds,
    jobs_cmds,
    monitor_cmds,
    registry_cmds,
    release_cmds,
    serve_cmds,
)
from modelfleet.cli.context import global_options
from modelfleet.cli.output import err_console
from modelfleet.errors import ModelfleetError

app = typer.Typer(
    name="modelfleet",
    help="Register, freeze, quantize, serve, ship and watch ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.callback()(global_options)

# Sub-apps mounted without a name merge their commands into the top level; ``--help``
# lists commands in the order they are mounted here, groups last.
app.add_typer(build_cmds.app)
app.add_typer(deploy_cmds.app)
app.add_typer(release_cmds.app)
app.add_typer(freeze_cmds.app)
app.add_typer(gc_cmds.app)
app.add_typer(jobs_cmds.app)
app.add_typer(monitor_cmds.app)
app.add_typer(registry_cmds.app)
app.add_typer(serve_cmds.app)
app.add_typer(jobs_cmds.jobs_app, name="jobs")
app.add_typer(jobs_cmds.pipeline_app, name="pipeline")
app.add_typer(monitor_cmds.monitor_app, name="monitor")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the console-script entry point)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("MODELFLEET_DEBUG") == "1"
    try:
        # Standalone mode lets typer report usage errors (exit 2) and --help itself; it ends
        # with SystemExit, and our own errors pass through it to be reported below.
        app(args=args, prog_name="modelfleet", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ModelfleetError as exc:
        if debug:
            traceback.print_exc()
        # The message quotes what the user typed and hints like 'modelfleet[build]': only
        # the prefix is markup.
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
