"""What the adversarial tests share: small models, a real server subprocess, raw HTTP.

The server is the CLI's ``modelfleet serve`` on a free loopback port, always reaped; requests
are written byte by byte on plain sockets, so a test can lie about lengths and keep reading
after a refusal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port

Answer = tuple[int, dict[str, str], bytes]

ROW = {"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
LABELS = {"name": "L", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}
GARBAGE: list[Any] = [None, True, -1, 1.5, 2**64, "x", "", [], {}, [None], [[[]]], {"a": [{}]}]


def scaled_sum(factor: float, features: int = 3) -> Any:
    """X float32[N, features] -> Y = factor x the row sums (factor tells two versions apart)."""
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    scale = helper.make_tensor("k", TensorProto.FLOAT, [], [factor])
    nodes = [
        helper.make_node("ReduceSum", ["X", "axes"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "k"], ["Y"]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", features])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1])
    graph = helper.make_graph(nodes, "scaled_sum", [x], [y], initializer=[axes, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def int_identity() -> Any:
    """L int64[N, 2] -> M, unchanged: integer inputs for the fractional and null data cases."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["L"], ["M"])],
        "labels",
        [helper.make_tensor_value_info("L", TensorProto.INT64, ["batch", 2])],
        [helper.make_tensor_value_info("M", TensorProto.INT64, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@contextmanager
def serving(folder: Path, server: str = "{}", *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    """``modelfleet serve`` of adder (a sum) and labels (int64 identity); killed if still up."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(scaled_sum(1.0), folder / "adder.onnx")
    onnx.save(int_identity(), folder / "labels.onnx")
    models = ", ".join(f"{{ref: {folder / n}.onnx, name: {n}}}" for n in ("adder", "labels"))
    (folder / "serve.yaml").write_text(f"server: {server}\nmodels: [{models}]\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    argv = [sys.executable, "-m", "modelfleet", "serve", "--config", str(folder / "serve.yaml")]
    with (folder / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*argv, *flags, "--port", str(port), "--log-level", "warning"],
            env={**env, "MODELFLEET_HOME": str(folder / "home")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proc.port = port  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            assert proc.poll() is None, (folder / "serve.log").read_text()
            assert time.monotonic() < deadline, "server not ready within 60 s"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def raw(
    method: str, path: str, body: bytes = b"", length: int | str | None = None, **headers: str
) -> bytes:
    """One HTTP/1.1 request; ``length`` overrides (lies about) the Content-Length."""
    fields = {"Host": "t", "Content-Type": "application/json", **headers}
    if body or method in ("POST", "PUT"):
        fields.setdefault("Content-Length", str(len(body) if length is None else length))
    head = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in fields.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body


def answers(port: int, data: bytes, count: int = 1, timeout: float = 15) -> list[Answer]:
    """Send ``data`` on a new connection; the first ``count`` answers (fewer if it closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with suppress(OSError):  # refused mid-send: the answer was written before the close
            sock.sendall(data)
        return receive(sock, count)


def receive(sock: socket.socket, count: int) -> list[Answer]:
    """The next ``count`` answers on ``sock``, fewer if the server closes it first."""
    found: list[Answer] = []
    buffer = b""
    while len(found) < count:
        parsed = _parse(buffer)
        if parsed is not None:
            found.append(parsed[0])
            buffer = parsed[1]
            continue
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buffer += chunk
    return found


def _parse(buffer: bytes) -> tuple[Answer, bytes] | None:
    head, sep, rest = buffer.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return (int(lines[0].split()[1]), headers, rest[:length]), rest[length:]


def v2(doc: Any, model: str = "adder", **headers: str) -> bytes:
    return raw("POST", f"/v2/models/{model}/infer", json.dumps(doc).encode(), **headers)


def binary(header: dict[str, Any], payload: bytes, header_length: int | None = None) -> bytes:
    head = json.dumps(header).encode()
    size = len(head) if header_length is None else header_length
    return raw(
        "POST", "/v2/models/adder/infer", head + payload, Inference_Header_Content_Length=str(size)
    )
