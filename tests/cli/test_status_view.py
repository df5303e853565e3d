"""``modelfleet status URL``: a running server's figures in the terminal, and clear failures."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.registry import Registry
from modelfleet.serving.auth import hash_token
from modelfleet.serving.settings import ModelConfig, ServeConfig, ServerConfig, TokenConfig
from tests.conftest import make_settings
from tests.models import logistic_pipeline
from tests.servers import free_port
from tests.serving.conftest import RunningServer, run_server

TOKEN = "mf_status_view_token"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout, and stderr as one line (rich wraps it at the console's width)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


@pytest.fixture(scope="module")
def iris_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A registry with iris (accuracy recorded), shared by the module's servers."""
    settings = make_settings(tmp_path_factory.mktemp("home"))
    model, X, y = logistic_pipeline()
    with Registry.open(settings) as registry:
        mf.register(
            model,
            name="iris",
            sample_input=X,
            metrics={"accuracy": model.score(X, y)},
            registry=registry,
        )
    return settings


@pytest.fixture(scope="module")
def server(iris_home: Settings) -> Iterator[RunningServer]:
    """iris served with its figures open, after 12 requests and labels for 10 of them."""
    _, X, y = logistic_pipeline()
    with run_server(ServeConfig(models=(ModelConfig(ref="iris"),)), iris_home) as running:
        ids = [_infer(running, x) for x in X[:12]]
        labels = [int(v) for v in y[:10]]
        labels[0] = (labels[0] + 1) % 3  # one wrong label: 90 %
        answer = running.http.post(
            "/v2/models/iris/feedback", json={"request_ids": ids[:10], "labels": labels}
        )
        assert answer.json()["live_accuracy"]["value"] == pytest.approx(0.9)
        yield running


def _infer(server: RunningServer, x: np.ndarray[Any, Any]) -> str:
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x.tolist()}]}
    response = server.http.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _line(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if f" {label} " in line)


def test_once_prints_the_figures_of_each_model(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "status", server.url, "--once")
    assert code == 0, err
    assert f"{server.url}  modelfleet {mf.__version__}, up " in out
    assert "iris" in out.splitlines()[2]  # the column header
    assert "1 fp32" in _line(out, "version")
    assert "ready" in _line(out, "state")
    assert _line(out, "requests").split()[-2] == "12"
    rps = float(_line(out, "requests/s").split()[-2])
    assert rps > 0
    assert "0.0% 5xx" in _line(out, "errors")
    assert "on, 0.0% hits" in _line(out, "cache")  # 12 different rows
    assert "no training profile" in _line(out, "drift")
    assert "live 90.0% (10 labelled), registered 97.3%" in _line(out, "accuracy")
    assert "0: " in _line(out, "predictions")


def test_json_prints_the_summary_document(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", f"{server.url}/", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["server"]["name"] == "modelfleet"
    (model,) = doc["models"]
    assert model["name"] == "iris" and model["requests"] == 12
    assert model["accuracy"]["live"] == pytest.approx(0.9)
    assert sum(model["predictions"].values()) == 12


def test_unreachable_url_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "status", url, "--once")
    assert code == 1 and out == ""
    assert f"cannot reach {url}/monitor/summary" in err
    assert "modelfleet serve" in err and "Traceback" not in err
    code, _, err = run(capsys, "status", "127.0.0.1:8080")
    assert code == 1 and "starting with http:// or https://" in err


@pytest.fixture
def other_server() -> Iterator[str]:
    """A web server that is not modelfleet: 404 for every path."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<h1>Not Found</h1>")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_another_server_is_not_taken_for_modelfleet(
    other_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status", other_server, "--once")
    assert code == 1
    assert "did not answer with a modelfleet summary (HTTP 404)" in err


def test_closed_figures_need_the_token(
    iris_home: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = ServeConfig(
        server=ServerConfig(
            tokens=(TokenConfig(name="ops", sha256=hash_token(TOKEN), scopes=("infer", "admin")),),
            open_paths=("health",),
        ),
        models=(ModelConfig(ref="iris"),),
    )
    with run_server(closed, iris_home) as running:
        code, _, err = run(capsys, "status", running.url, "--once")
        assert code == 1 and "needs a bearer token; pass --token or set MODELFLEET_TOKEN" in err
        code, _, err = run(capsys, "status", running.url, "--once", "--token", "mf_wrong")
        assert code == 1 and "refused the token: the bearer token is not valid" in err
        code, out, _ = run(capsys, "status", running.url, "--once", "--token", TOKEN)
        assert code == 0 and "iris" in out
        monkeypatch.setenv("MODELFLEET_TOKEN", TOKEN)
        code, out, _ = run(capsys, "status", running.url, "--json")
        assert code == 0 and json.loads(out)["models"][0]["name"] == "iris"


def test_live_view_refreshes_until_interrupted(server: RunningServer, tmp_path: Path) -> None:
    before = int(server.http.get("/monitor/summary").json()["models"][0]["requests"])
    out = tmp_path / "out.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    # A terminal as rich sees it, so every refresh is written out (not only the last one).
    env.update(TTY_COMPATIBLE="1", NO_COLOR="1", COLUMNS="120", LINES="60")

    def shown_requests() -> set[int]:
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.read_text())
        return {int(n) for n in re.findall(r"│ requests +│ (\d+) ", text)}

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while count not in shown_requests():
            assert view.poll() is None, view.communicate()[1]
            assert time.monotonic() < deadline, f"the view never showed {count} requests"
            time.sleep(0.05)

    with out.open("w") as stdout:
        # Ctrl-C raises KeyboardInterrupt in the view whatever this run inherited: a
        # background job of a non-interactive shell (CI, nohup) starts with SIGINT ignored.
        start = (
            "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from modelfleet.cli.app import main; sys.exit(main(sys.argv[1:]))"
        )
        argv = [sys.executable, "-c", start, "status", server.url, "--interval", "0.2"]
        view = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
        try:
            wait_for(before)
            _, X, _ = logistic_pipeline()
            for x in X[:5]:
                _infer(server, x)
            wait_for(before + 5)
            view.send_signal(signal.SIGINT)
            _, err = view.communicate(timeout=30)
        finally:
            if view.poll() is None:
                view.kill()
                view.communicate()
    assert view.returncode == 0, err
    assert err == ""
