"""Lazy package faces: one list of names, each imported from its module on first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelfleet.lazy import reexports


def make_package(root: Path) -> None:
    pkg = root / "facepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            from modelfleet.lazy import attach as _attach

            if TYPE_CHECKING:
                from facepkg.light import small as small
                from facepkg.heavy import Big as Big

            __getattr__, __dir__, __all__ = _attach(__name__, __file__)
            """
        )
    )
    (pkg / "light.py").write_text("def small():\n    return 'small'\n")
    (pkg / "heavy.py").write_text("import json\nLOADED = True\nclass Big:\n    pass\n")


def run(root: Path, code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return out.stdout.strip()


def test_a_name_loads_only_its_own_module(tmp_path: Path) -> None:
    make_package(tmp_path)
    printed = run(
        tmp_path,
        """
        import sys, facepkg
        print(facepkg.__all__, facepkg.small(), 'facepkg.heavy' in sys.modules)
        from facepkg import Big
        print('facepkg.heavy' in sys.modules, Big.__module__)
        """,
    )
    assert printed.splitlines() == ["['Big', 'small'] small False", "True facepkg.heavy"]


def test_an_unknown_name_is_an_attribute_error_naming_the_package(tmp_path: Path) -> None:
    make_package(tmp_path)
    printed = run(
        tmp_path,
        """
        import facepkg
        try:
            facepkg.nothing
        except AttributeError as exc:
            print(exc)
        print(sorted(set(dir(facepkg)) & {'Big', 'small'}))
        """,
    )
    assert printed.splitlines() == [
        "module 'facepkg' has no attribute 'nothing'",
        "['Big', 'small']",
    ]


@pytest.mark.parametrize("package", ["modelfleet", "modelfleet.serving"])
def test_the_real_faces_list_what_their_type_checking_block_imports(package: str) -> None:
    module = __import__(package, fromlist=["__all__"])
    names = reexports(Path(module.__file__ or ""))
    assert set(names) <= set(module.__all__)
    assert all(getattr(module, name) is not None for name in names)
