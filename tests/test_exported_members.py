"""The public API is exactly what we mean to export (idea from HTTPX)."""

from __future__ import annotations

import inspect

import modelfleet


def test_all_lists_every_public_name_and_nothing_else() -> None:
    public = {
        name
        for name, value in vars(modelfleet).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "").startswith("modelfleet")
    }
    assert public == set(modelfleet.__all__) - {"__version__"}


def test_every_exported_name_resolves() -> None:
    for name in modelfleet.__all__:
        assert getattr(modelfleet, name) is not None
