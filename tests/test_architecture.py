"""The package map in docs/architecture.md, checked against the imports in the code.

Every ``import`` in ``src/modelfleet`` counts, also those inside functions (lazy imports of
optional dependencies still tie one package to another at run time). The root
``modelfleet/__init__.py`` is the facade: it re-exports names lazily and sits above
everything, so it is not a node; ``from modelfleet import __version__`` is an edge to the
``version`` leaf, since that is the only thing the root defines itself.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelfleet

SRC = Path(modelfleet.__file__).parent

PAGE = Path(__file__).parents[1] / "docs" / "architecture.md"


def documented_layers(page: Path) -> list[set[str]]:
    """The layers table of docs/architecture.md, lowest layer first."""
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", page.read_text(encoding="utf-8"), re.MULTILINE)
    ranked = sorted((int(rank), set(re.findall(r"`([^`]+)`", names))) for rank, names in rows)
    return [names for _, names in ranked]


# The map is the page: lowest layer first. A package may import only packages of lower
# layers (never its own layer's siblings): that is what "the arrows point down" means, and
# it rules out every cycle.
LAYERS = documented_layers(PAGE)
# The serving image installs modelfleet[serve] only: the control plane must stay out of it.
CONTROL_PLANE = {"build", "deploy", "kube", "jobs", "pipeline", "monitor", "cli", "sdk", "freeze"}
LAYER_OF = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


@dataclass(frozen=True)
class Import:
    """One import of a modelfleet module by another."""

    source: str  # dotted name of the importing module
    target: str  # dotted name of what it imports (module, or module + name)
    line: int

    @property
    def edge(self) -> tuple[str, str]:
        return top_level(self.source), top_level(self.target)


def top_level(dotted: str) -> str:
    """The top-level node a dotted name belongs to (``modelfleet.serving.app`` → ``serving``)."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return "facade"
    if parts[1] == "__version__":
        return "version"
    return parts[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(root: Path) -> list[Import]:
    """Every import of ``root``'s package by its own modules, absolute and relative."""
    package = root.name
    found: list[Import] = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = source.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from modelfleet import sdk` imports a module; `from modelfleet import
                # __version__` a name: both are told apart by top_level().
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            found += [
                Import(source, target, node.lineno)
                for target in targets
                if target == package or target.startswith(package + ".")
            ]
    return found


def graph(found: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in found:
        src, dst = imp.edge
        if src not in {dst, "facade"}:
            edges[src].add(dst)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(edges) | {d for ds in edges.values() for d in ds}):
        if node not in index:
            visit(node)
    return found


def upward(found: list[Import]) -> list[str]:
    """Imports that point up or sideways in LAYERS, or leave the map, as readable lines."""
    wrong = []
    for imp in found:
        src, dst = imp.edge
        if src in {dst, "facade"}:
            continue
        if src not in LAYER_OF or dst not in LAYER_OF:
            unknown = src if src not in LAYER_OF else dst
            wrong.append(f"{imp.source}:{imp.line}: '{unknown}' is not on the map")
        elif LAYER_OF[dst] >= LAYER_OF[src]:
            wrong.append(
                f"{imp.source}:{imp.line} imports {imp.target}: "
                f"{src} (layer {LAYER_OF[src]}) may not depend on {dst} (layer {LAYER_OF[dst]})"
            )
    return wrong


def test_no_cycle_between_top_level_packages() -> None:
    assert cycles(graph(imports_in(SRC))) == []


def test_every_import_points_down_the_map() -> None:
    assert upward(imports_in(SRC)) == []


def test_serving_imports_no_control_plane_package() -> None:
    reached = {
        f"{imp.source}:{imp.line} -> {imp.target}"
        for imp in imports_in(SRC)
        if imp.edge[0] == "serving" and imp.edge[1] in CONTROL_PLANE
    }
    assert reached == set()


def test_stats_stays_below_everything_but_the_tensor_types() -> None:
    used = {imp.edge[1] for imp in imports_in(SRC) if imp.edge[0] == "stats"} - {"stats"}
    assert used <= {"signature", "errors"}


def test_the_page_draws_every_layer_once() -> None:
    ranks = [int(rank) for rank in re.findall(r"^\| (\d+) \|", PAGE.read_text(), re.MULTILINE)]
    assert ranks == list(range(len(ranks) - 1, -1, -1))  # top first, no gap, no repeat
    named = [name for layer in LAYERS for name in layer]
    assert len(named) == len(set(named))
    assert {"serving", "stats", "db", "kube", "cli"} <= set(named)


def test_every_package_on_disk_is_on_the_map() -> None:
    on_disk = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    on_disk |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert on_disk - set(LAYER_OF) == set()


def past_the_face(found: list[Import], root: Path) -> list[str]:
    """Imports that reach into another package's modules instead of its ``__init__``."""
    wrong = []
    for imp in found:
        src, dst = imp.edge
        parts = imp.target.split(".")
        if src in {dst, "facade"} or not (root / dst / "__init__.py").exists() or len(parts) < 3:
            continue
        inner = root / dst / parts[2]
        if inner.with_suffix(".py").exists() or (inner / "__init__.py").exists():
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target}: use modelfleet.{dst}")
    return wrong


def test_packages_use_each_other_through_their_faces() -> None:
    assert past_the_face(imports_in(SRC), SRC) == []


# The checker itself, on small trees that break the rules: a check that cannot fail is no check.


def write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "modelfleet"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


def test_checker_finds_a_cycle_through_relative_and_lazy_imports(tmp_path: Path) -> None:
    pkg = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "jobs/__init__.py": "from .queue import Queue\n",
            "jobs/queue.py": "from modelfleet.pipeline import run\nQueue = 1\n",
            "pipeline/__init__.py": "def run():\n    from ..monitor import rules\n",
            "monitor/__init__.py": "from modelfleet import jobs\n",
        },
    )
    assert cycles(graph(imports_in(pkg))) == [["jobs", "monitor", "pipeline"]]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from modelfleet.deploy import render\n", "serving (layer 4) may not depend on deploy"),
        ("from modelfleet.freeze import x\n", "serving (layer 4) may not depend on freeze"),
        ("import modelfleet.gadgets\n", "'gadgets' is not on the map"),
    ],
)
def test_checker_reports_an_upward_import(tmp_path: Path, source: str, expected: str) -> None:
    pkg = write_package(tmp_path, {"__init__.py": "", "serving/app.py": source})
    (problem,) = upward(imports_in(pkg))
    assert expected in problem
    assert problem.startswith("modelfleet.serving.app:1")


def test_checker_reports_an_import_past_a_package_face(tmp_path: Path) -> None:
    pkg = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "registry/__init__.py": "from .store import Store\n",
            "registry/store.py": "Store = 1\n",
            "sdk.py": "from modelfleet.registry import Store\n"
            "from modelfleet.registry.store import Store\n",
        },
    )
    assert past_the_face(imports_in(pkg), pkg) == [
        "modelfleet.sdk:2 imports modelfleet.registry.store.Store: use modelfleet.registry"
    ]


def test_version_import_is_a_leaf_not_the_facade(tmp_path: Path) -> None:
    pkg = write_package(
        tmp_path,
        {
            "__init__.py": "from modelfleet.sdk import register\n",
            "serving/core.py": ("from modelfleet import __version__\n"),
        },
    )
    assert graph(imports_in(pkg)) == {"serving": {"version"}}
    assert upward(imports_in(pkg)) == []
