"""A real Prometheus for the tests, and promtool: Debian's binaries, a temp folder, a free port.

The server scrapes the given targets every second and evaluates its rule files every second,
so a test sees its samples and its rules' health within a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.servers import free_port


def binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``; a clear message when the package is missing."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found is None:
        raise RuntimeError(
            f"{name} not found; run 'make test' (it installs Debian's 'prometheus' package)"
        )
    return found


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller checks the exit code and reads stdout and stderr."""
    return subprocess.run(
        [binary("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


@dataclass
class Prometheus:
    """A running server: its URL, its log, and the HTTP API calls the tests need."""

    url: str
    log: Path
    http: httpx.Client

    def query(self, expr: str) -> dict[str, Any]:
        """The raw answer of ``/api/v1/query`` (``status`` is ``success`` or ``error``)."""
        answer: dict[str, Any] = self.http.get("/api/v1/query", params={"query": expr}).json()
        return answer

    def vector(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        answer = self.query(expr)
        if answer["status"] != "success":
            raise AssertionError(f"{expr}: {answer.get('error')}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(
        self,
        expr: str,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``until(result)`` holds; fail showing the last result."""
        deadline = time.monotonic() + timeout
        result = self.vector(expr)
        while not until(result):
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout} s, {expr} is still {result}")
            time.sleep(0.25)
            result = self.vector(expr)
        return result

    def rule_groups(self) -> list[dict[str, Any]]:
        """The rule groups Prometheus loaded, with each rule's health and last error."""
        groups: list[dict[str, Any]] = self.http.get("/api/v1/rules").json()["data"]["groups"]
        return groups


def _config(targets: Sequence[str], rule_files: Sequence[Path]) -> dict[str, Any]:
    scrape = [{"job_name": "modelfleet", "static_configs": [{"targets": list(targets)}]}]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape if targets else [],
    }


@contextmanager
def prometheus_server(
    targets: Sequence[str] = (), rule_files: Sequence[Path] = ()
) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets`` (host:port) with ``rule_files``; stop it after."""
    root = Path(tempfile.mkdtemp(prefix="modelfleet-prometheus-"))
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(targets, rule_files)))
    port = free_port()
    log_path = root / "prometheus.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            _wait_ready(http, proc, log_path)
            yield Prometheus(url, log_path, http)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(http: httpx.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if http.get("/-/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"prometheus not ready after 30 s:\n{log.read_text()}")
