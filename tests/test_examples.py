"""The README's Python snippets and the demo run as written, so the docs cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
README_URL = "http://127.0.0.1:8080"

# Injected before the README snippet that talks to a server: serve what the snippets
# registered so far, on a free port, and point the snippet at it.
SERVER_PRELUDE = """
import atexit, subprocess, sys, time, httpx
_server = subprocess.Popen([sys.executable, "-m", "modelfleet", "serve", "iris",
                            "--port", "{port}"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
atexit.register(lambda: (_server.terminate(), _server.wait()))
for _ in range(600):
    try:
        if httpx.get("{url}/v2/health/ready").status_code == 200:
            break
    except httpx.TransportError:
        pass
    time.sleep(0.1)
"""


def test_readme_python_snippets_run_in_order(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    parts = []
    started = False
    for block in blocks:
        if README_URL in block and not started:
            parts.append(SERVER_PRELUDE.format(port=port, url=url))
            started = True
        parts.append(block.replace(README_URL, url))
    script = tmp_path / "readme.py"
    script.write_text("\n".join(parts))
    env = {**os.environ, "MODELFLEET_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The output the README shows is the output the code gives.
    assert "iris:1 (input: float32[?, 4]) -> (label: int64[?], probabilities: float32[?, 3])" in (
        result.stdout
    )
    assert "[0 0 0 0 0 0 0 0 0 0]" in result.stdout  # the client snippet's labels
    assert "iris-lr:1 True" in result.stdout  # the pipeline snippet registered and gated
    assert "'labelled_requests': 1" in result.stdout  # the feedback snippet
    assert result.stdout.strip().endswith("1")


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "MODELFLEET_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "job 1: succeeded after 1 attempt(s)" in out  # trained by a worker off the queue
    assert "churn@qa -> churn:1" in out
    assert "churn risk" in out  # a DataFrame answered through the SDK client
    assert "digits-mlp:1 -> digits-mlp:2: fp16 accepted" in out
    assert "tree ensembles have none" in out
    assert "cancer-gbt@qa -> cancer-gbt:1" in out
    assert "registry summary" in out
    assert "V2 binary (SDK)" in out
    assert "KServe v1" in out
    assert "output cache: 200 hits" in out
    assert "prod: 9 manifests" in out
    assert "container answered at" in out  # podman is installed by make test
    # The monitoring loop: feedback moves live accuracy and switches a cache off, shifted
    # prices raise churn's drift, the trigger names the job it would queue, and the demo ends
    # with the summary.
    assert "digits-mlp: true labels for 20 requests -> live accuracy" in out
    assert "its output cache is suspended" in out
    assert re.search(r"prices doubled -> drift \(PSI\) monthly \d", out)
    assert "would submit (dry run, pass --auto-retrain): modelfleet jobs submit" in out
    assert "examples/churn/pipeline.py --param seed=0" in out
    assert out.index("monitoring summary") > out.index("container answered at")
    assert "suspended (" in out.split("monitoring summary")[-1]
