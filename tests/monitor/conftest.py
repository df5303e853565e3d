"""Fixtures of the monitoring tests: real Prometheus servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.prometheus import Prometheus, prometheus_server


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI messages on one line, as a wide terminal shows them."""
    monkeypatch.setenv("COLUMNS", "300")


@pytest.fixture
def start_prometheus() -> Iterator[Callable[..., Prometheus]]:
    """Start Prometheus servers (targets=…, rule_files=…); all are stopped after the test."""
    with ExitStack() as stack:
        yield lambda **options: stack.enter_context(prometheus_server(**options))


@pytest.fixture(scope="module")
def idle_prometheus() -> Iterator[Prometheus]:
    """A Prometheus with nothing to scrape: its query API checks PromQL for the module."""
    with prometheus_server() as server:
        yield server
