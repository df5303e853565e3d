"""Lazy package faces: a package lists its public names once and imports each on first use.

A package's ``__init__.py`` writes its public names as re-exports under ``if TYPE_CHECKING:``
(``from modelfleet.serving.app import ServingApp as ServingApp``). Type checkers read those
as written; at run time they are not executed, and :func:`attach` reads the same lines to
import each name from its module when it is first asked for. So the list is written once,
and importing a light corner of a package (the V2 codec for the client, the serve config
for an image build) does not load the whole package's dependencies.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def reexports(init_file: str | Path) -> dict[str, str]:
    """``{public name: module}`` from the ``if TYPE_CHECKING:`` block of ``init_file``."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"), str(init_file))
    names: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"):
            continue
        for item in node.body:
            if isinstance(item, ast.ImportFrom) and item.module and not item.level:
                names.update({alias.asname or alias.name: item.module for alias in item.names})
    return names


def attach(
    package: str, init_file: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose ``__init__`` is ``init_file``."""
    table = reexports(init_file)
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__, sorted(table, key=str.casefold)
