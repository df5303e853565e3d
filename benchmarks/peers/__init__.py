"""Start the benchmark's peer servers (Seldon MLServer, BentoML) from the harness interpreter.

The harness runs under the project's ``.venv``, which has neither ``mlserver`` nor
``bentoml``: each peer runs as a subprocess from its own virtualenv, made by
``benchmarks/peers/setup.sh`` under ``benchmarks/.venvs/{mlserver,bentoml}``. Every peer
binds 127.0.0.1 only, on the port the caller chose, runs in its own process group (so
``stop`` also reaps any children it forked) and logs to a file in ``workdir``.

``start_mlserver`` / ``start_bentoml`` return only once the peer has answered a real
inference request; if it does not within ``startup_timeout`` seconds (or exits first),
the peer is stopped and ``PeerStartError`` carries the tail of its log.

Example::

    model_path, rows = build_model(cache_dir)
    peer = start_mlserver(model_path, free_port(), adaptive_batching=True, workdir=tmp)
    try:
        wrk_run(peer.url + peer.infer_path, peer.body(rows[:1]), peer.headers, ...)
    finally:
        peer.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "BENTOML_VENV",
    "MLSERVER_VENV",
    "Peer",
    "PeerStartError",
    "free_port",
    "start_bentoml",
    "start_mlserver",
]

PEERS_DIR = Path(__file__).resolve().parent
VENVS_DIR = PEERS_DIR.parent / ".venvs"
MLSERVER_VENV = VENVS_DIR / "mlserver"
BENTOML_VENV = VENVS_DIR / "bentoml"
MLSERVER_CONFIG_DIR = PEERS_DIR / "mlserver"
MODEL_NAME = "rf"
N_FEATURES = 20
HOST = "127.0.0.1"
JSON_HEADERS = {"Content-Type": "application/json"}
LOG_TAIL_LINES = 40


class PeerStartError(RuntimeError):
    """A peer did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _first_error(path: Path) -> str | None:
    """The exception line that closes the log's first traceback, if there is one."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line.strip() and not line[0].isspace():
            return line.strip()
    return None


def _log_has(path: Path, markers: tuple[str, ...]) -> str | None:
    if not markers:
        return None
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return next((m for m in markers if m in text), None)


@dataclass(eq=False)
class Peer:
    """A running peer server.

    ``url`` is the base URL, ``infer_path`` the inference route, ``headers`` the request
    headers, ``body(rows)`` the request body for a float32 ``[N, 20]`` matrix and
    ``decode(response_bytes)`` turns an answer back into ``(labels, probabilities)``.
    """

    name: str
    url: str
    infer_path: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    _encode: Callable[[np.ndarray], bytes] = field(repr=False)
    _decode: Callable[[bytes], tuple[np.ndarray, np.ndarray]] = field(repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def infer_url(self) -> str:
        return self.url + self.infer_path

    def body(self, rows: np.ndarray) -> bytes:
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != N_FEATURES:
            raise ValueError(f"rows must be [N, {N_FEATURES}], got {rows.shape}")
        return self._encode(rows)

    def decode(self, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
        return self._decode(payload)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the peer's process group, wait, then SIGKILL whatever is left.

        Calling it again is a no-op (the group id must not be signalled once reused).
        """
        if self._stopped:
            return
        self._stopped = True
        pgid = self.process.pid  # start_new_session=True: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        # Children that outlived the leader (workers, watchers) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_LIVE: weakref.WeakSet[Peer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for peer in list(_LIVE):
        with contextlib.suppress(Exception):
            peer.stop(timeout=5.0)


# --- request / response encodings -------------------------------------------------------


def _v2_body(rows: np.ndarray) -> bytes:
    request = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [int(rows.shape[0]), N_FEATURES],
                "data": rows.reshape(-1).tolist(),
            }
        ]
    }
    return json.dumps(request, separators=(",", ":")).encode()


def _v2_decode(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    outputs = {o["name"]: o for o in json.loads(payload)["outputs"]}
    label = outputs["label"]
    probs = outputs["probabilities"]
    labels = np.asarray(label["data"], dtype=np.int64).reshape(label["shape"][0])
    probabilities = np.asarray(probs["data"], dtype=np.float32).reshape(probs["shape"])
    return labels, probabilities


def _bento_body(rows: np.ndarray) -> bytes:
    return json.dumps({"inputs": rows.tolist()}, separators=(",", ":")).encode()


def _bento_decode(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    table = np.asarray(json.loads(payload), dtype=np.float64).reshape(-1, 3)
    labels = np.rint(table[:, 0]).astype(np.int64)
    return labels, table[:, 1:].astype(np.float32)


# --- process plumbing -------------------------------------------------------------------


def _model_file(model_path: Path) -> Path:
    path = Path(model_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return path


def _venv_binary(venv: Path, name: str) -> Path:
    binary = venv / "bin" / name
    if not binary.is_file():
        raise PeerStartError(f"{binary} is missing: run benchmarks/peers/setup.sh first")
    return binary


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(extra)
    return env


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _wait_answering(peer: Peer, timeout: float, fatal_markers: tuple[str, ...]) -> None:
    """Poll with a one-row inference request until the peer answers it correctly.

    Gives up early when the process exits or its log shows one of ``fatal_markers``
    (BentoML's supervisor keeps restarting a worker that fails to start, so its main
    process would otherwise stay up until the timeout).
    """
    probe_rows = np.zeros((1, N_FEATURES), dtype=np.float32)
    body = peer.body(probe_rows)
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while time.monotonic() < deadline:
        if not peer.alive():
            last_error = f"process exited with code {peer.process.returncode}"
            break
        marker = _log_has(peer.log_path, fatal_markers)
        if marker is not None:
            last_error = f"its log says {marker!r}"
            break
        try:
            status, payload = _post(peer.infer_url, body, peer.headers, timeout=5.0)
        except (OSError, urllib.error.URLError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                labels, probabilities = peer.decode(payload)
                if labels.shape == (1,) and probabilities.shape == (1, 2):
                    return
                last_error = f"malformed answer: {payload[:200]!r}"
            else:
                last_error = f"HTTP {status}: {payload[:200]!r}"
        time.sleep(0.25)
    else:
        last_error = f"no answer within {timeout:.0f}s ({last_error})"
    peer.stop()
    first_error = _first_error(peer.log_path)
    cause = f"\nfirst error in its log: {first_error}" if first_error else ""
    raise PeerStartError(
        f"{peer.name} on {peer.url} did not start: {last_error}{cause}\n"
        f"--- last lines of {peer.log_path} ---\n{peer.log_tail()}"
    )


def _launch(
    name: str,
    argv: list[str],
    *,
    port: int,
    workdir: Path,
    env: dict[str, str],
    infer_path: str,
    encode: Callable[[np.ndarray], bytes],
    decode: Callable[[bytes], tuple[np.ndarray, np.ndarray]],
    startup_timeout: float,
    fatal_markers: tuple[str, ...] = (),
) -> Peer:
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("wb")
    try:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=_child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        log_file.close()
        raise
    peer = Peer(
        name=name,
        url=f"http://{HOST}:{port}",
        infer_path=infer_path,
        headers=dict(JSON_HEADERS),
        process=process,
        log_path=log_path,
        _encode=encode,
        _decode=decode,
        _log_file=log_file,
    )
    _LIVE.add(peer)
    _wait_answering(peer, startup_timeout, fatal_markers)
    return peer


# --- MLServer ---------------------------------------------------------------------------


def _mlserver_settings(port: int, grpc_port: int) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads((MLSERVER_CONFIG_DIR / "settings.json").read_text())
    settings.update({"host": HOST, "http_port": port, "grpc_port": grpc_port})
    return settings


def _mlserver_model_settings(
    model_path: Path, adaptive_batching: bool, max_batch_size: int, max_batch_time: float
) -> dict[str, Any]:
    template = "model-settings.batching.json" if adaptive_batching else "model-settings.json"
    model_settings: dict[str, Any] = json.loads((MLSERVER_CONFIG_DIR / template).read_text())
    model_settings["name"] = MODEL_NAME
    model_settings["parameters"] = {"uri": str(model_path)}
    if adaptive_batching:
        model_settings["max_batch_size"] = max_batch_size
        model_settings["max_batch_time"] = max_batch_time
    else:
        model_settings["max_batch_size"] = 0
        model_settings["max_batch_time"] = 0.0
    return model_settings


def start_mlserver(
    model_path: Path,
    port: int,
    *,
    adaptive_batching: bool,
    workdir: Path,
    max_batch_size: int = 64,
    max_batch_time: float = 0.005,
    parallel_workers: int = 0,
    startup_timeout: float = 120.0,
) -> Peer:
    """Serve ``model_path`` with MLServer (V2 REST at ``/v2/models/rf/infer``) on ``port``.

    ``adaptive_batching`` switches MLServer's adaptive batching on with ``max_batch_size``
    requests and ``max_batch_time`` seconds. ``parallel_workers=0`` (the default) runs
    the model inside the one server process, as the BentoML peer does; MLServer's own
    default of 1 would add a separate inference process behind an IPC hop. gRPC listens
    on a second free loopback port (it cannot be switched off); the metrics server is off.
    """
    if adaptive_batching and (max_batch_size <= 1 or max_batch_time <= 0):
        raise ValueError("adaptive batching needs max_batch_size > 1 and max_batch_time > 0")
    model_path = _model_file(model_path)
    binary = _venv_binary(MLSERVER_VENV, "mlserver")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    repo = workdir / "mlserver-repo"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / MODEL_NAME).mkdir(parents=True)
    settings = _mlserver_settings(port, free_port())
    settings["parallel_workers"] = parallel_workers
    settings["metrics_dir"] = str(workdir / "mlserver-metrics")
    settings["environments_dir"] = str(workdir / "mlserver-envs")
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = _mlserver_model_settings(
        model_path, adaptive_batching, max_batch_size, max_batch_time
    )
    (repo / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    name = "mlserver-batching" if adaptive_batching else "mlserver"
    return _launch(
        name,
        [str(binary), "start", str(repo)],
        port=port,
        workdir=workdir,
        env={"PYTHONPATH": str(PEERS_DIR)},
        infer_path=f"/v2/models/{MODEL_NAME}/infer",
        encode=_v2_body,
        decode=_v2_decode,
        startup_timeout=startup_timeout,
    )


# --- BentoML ----------------------------------------------------------------------------


def start_bentoml(
    model_path: Path,
    port: int,
    *,
    batchable: bool,
    workdir: Path,
    startup_timeout: float = 120.0,
) -> Peer:
    """Serve ``model_path`` with BentoML (JSON at ``/predict``) on ``port``.

    ``batchable`` picks ``bentoml_service:RFBatched`` (adaptive batching, 64 rows) over
    ``bentoml_service:RFPlain``. One worker process; see ``bentoml_service`` for the JSON.
    """
    model_path = _model_file(model_path)
    binary = _venv_binary(BENTOML_VENV, "bentoml")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    service = "RFBatched" if batchable else "RFPlain"
    argv = [
        str(binary),
        "serve",
        f"bentoml_service:{service}",
        "--host",
        HOST,
        "--port",
        str(port),
        "--working-dir",
        str(PEERS_DIR),
    ]
    env = {
        "BENCH_RF_ONNX": str(model_path),
        "BENTOML_HOME": str(workdir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    name = "bentoml-batchable" if batchable else "bentoml"
    return _launch(
        name,
        argv,
        port=port,
        workdir=workdir,
        env=env,
        infer_path="/predict",
        encode=_bento_body,
        decode=_bento_decode,
        startup_timeout=startup_timeout,
        fatal_markers=("Application startup failed",),
    )
