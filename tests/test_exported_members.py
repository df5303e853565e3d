"""The public API is exactly what we mean to export (idea from HTTPX)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import modelfleet


def test_all_lists_every_public_name_and_nothing_else() -> None:
    public = {
        name
        for name in dir(modelfleet)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(modelfleet, name))
        and getattr(getattr(modelfleet, name), "__module__", "").startswith("modelfleet")
    }
    assert public == set(modelfleet.__all__) - {"__version__"}


def test_every_exported_name_resolves() -> None:
    for name in modelfleet.__all__:
        assert getattr(modelfleet, name) is not None


def test_importing_the_package_loads_no_heavy_stack() -> None:
    script = (
        "import sys, modelfleet; print(sorted({'sqlalchemy', 'typer', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
