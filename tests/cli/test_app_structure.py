"""The CLI's shape: a complete app on import, one-way imports inside ``modelfleet.cli``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import modelfleet.cli.output

CLI_DIR = Path(modelfleet.cli.output.__file__).parent

# What users type today; the help screens list them in this order, groups last.
TOP_LEVEL = [
    "build",
    "base-image",
    "run-local",
    "deploy",
    "rollback",
    "status",
    "release",
    "freeze",
    "quantize",
    "gc",
    "worker",
    "feedback",
    "register",
    "models",
    "versions",
    "show",
    "artifacts",
    "promote",
    "history",
    "serve",
    "reload",
    "token",
    "jobs",
    "pipeline",
    "monitor",
]
GROUPS = {
    "jobs": ["submit", "list", "show", "logs", "cancel"],
    "pipeline": ["run"],
    "monitor": ["rules", "dashboard", "watch"],
}

# Runs in a fresh interpreter, so nothing but the import itself can have built the app.
TREE_SCRIPT = """
import json, typer
from modelfleet.cli.app import app
root = typer.main.get_command(app)
print(json.dumps({name: list(getattr(cmd, "commands", {})) for name, cmd in root.commands.items()}))
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _help_commands(*args: str) -> list[str]:
    """The command names a user sees under "Commands:" in ``modelfleet ARGS --help``."""
    result = _python("-m", "modelfleet", *args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: modelfleet")
    lines = result.stdout.split("Commands:\n", 1)[1].splitlines()
    return [line.split()[0] for line in lines if line.startswith("  ") and line.strip()]


def test_python_m_modelfleet_help_lists_every_command() -> None:
    assert _help_commands() == TOP_LEVEL
    for group, commands in GROUPS.items():
        assert _help_commands(group) == commands


def test_app_is_complete_on_import() -> None:
    result = _python("-c", TREE_SCRIPT)
    assert result.returncode == 0, result.stderr
    tree = json.loads(result.stdout)
    assert list(tree) == _help_commands()
    for group in GROUPS:
        assert tree[group] == _help_commands(group)


def _cli_imports(path: Path) -> set[str]:
    """Modules of ``modelfleet.cli`` that ``path`` imports, lazy imports included.

    ``from modelfleet.cli import NAME`` names a submodule when a file of that name exists,
    and otherwise something the package re-exports from ``app`` (``main``, ``run``).
    """
    modules = {p.stem for p in CLI_DIR.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] != ["modelfleet", "cli"]:
                continue
            if len(parts) == 2:
                found.add("__init__")
            elif parts[2] in modules:
                found.add(parts[2])
            else:
                found.add("__init__")
    return found


def _import_graph() -> dict[str, set[str]]:
    return {path.stem: _cli_imports(path) - {path.stem} for path in CLI_DIR.glob("*.py")}


def test_only_the_entry_points_import_the_app() -> None:
    graph = _import_graph()
    importers = {module for module, targets in graph.items() if "app" in targets}
    assert importers == {"__init__"}
    # ``__init__`` re-exports the app, so importing it from the package is the same arrow.
    assert {module for module, targets in graph.items() if "__init__" in targets} == set()


def test_command_modules_do_not_import_each_other() -> None:
    graph = _import_graph()
    commands = {module for module in graph if module.endswith("_cmds")}
    assert len(commands) == 9
    for module in commands:
        assert graph[module] & commands == set(), module


def test_imports_inside_the_cli_point_one_way() -> None:
    graph = _import_graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert graph["output"] == set()
    assert graph["context"] == {"output"}
