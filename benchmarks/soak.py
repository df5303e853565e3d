"""Soak: a real ``modelfleet serve`` under good, bad, large and slow clients for minutes.

Runs the server as a subprocess on a free loopback port (anything else is refused), drives a
fixed mix of clients for ``SOAK_SECONDS`` (or the first argument; default 180 s), and prints
at start, every 30 s and at the end: requests sent, status counts per client class, the
server's RSS and open file descriptors (from /proc), and the good requests' p50/p99 latency.
It stops by itself, reaps the server, and writes the summary as JSON to benchmarks/results/.

    python benchmarks/soak.py [SECONDS] [--out DIR]      (make soak, SOAK_SECONDS=600)
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ROW = {"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
BAD_BODIES = [
    b'{"inputs":[{"name":"X","shape":[true,3],"datatype":"FP32","data":[1,2,3]}]}',
    b'{"id":{"a":1},"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}',
    b'{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[null,2,3]}]}',
    b'{"inputs":[{"name":"X","shape":[4611686018427387904,0],"datatype":"FP32","data":[]}]}',
    b'{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":"x"}]}',
    b"not json at all",
    b"[" * 10_000,
]


def sum_model(path: Path) -> None:
    """An ONNX graph summing each row: X float32[N, 3] -> Y float32[N, 1]."""
    import onnx
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=1)],
        "sum_rows",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def request(body: bytes, path: str = "/v2/models/adder/infer") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def v2_body(rows: int) -> bytes:
    return json.dumps({"inputs": [{**ROW, "shape": [rows, 3], "data": [1, 2, 3] * rows}]}).encode()


def read_answer(stream: Any) -> tuple[int, bool]:
    """Status of the next answer and whether the server closes the connection after it."""
    status_line = stream.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    stream.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers.get("connection") == "close"


class Soak:
    """The clients, their counters and the server they hammer."""

    def __init__(self, port: int, seconds: float) -> None:
        self.port = port
        self.end = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {}
        self.good_latency_ms: list[float] = []

    def count(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.counts.setdefault(kind, Counter())[outcome] += 1

    def loop(self, kind: str, data: bytes, pause_s: float = 0.0) -> None:
        """Send ``data`` over and over on kept-alive connections, reconnecting when closed."""
        while time.monotonic() < self.end:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                stream = sock.makefile("rb")
                closes = False
                while not closes and time.monotonic() < self.end:
                    started = time.perf_counter()
                    try:
                        sock.sendall(data)
                        status, closes = read_answer(stream)
                    except OSError:
                        self.count(kind, "no answer")
                        break
                    if kind == "good" and status == 200:
                        with self.lock:
                            self.good_latency_ms.append((time.perf_counter() - started) * 1e3)
                    self.count(kind, str(status))
                    time.sleep(pause_s)

    def slow(self) -> None:
        """A head sent one byte a second: the server should answer 408 and hang up."""
        while time.monotonic() < self.end:
            with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                sock.sendall(b"POST /v2/models/adder/infer HTTP/1.1\r\nHost: soak\r\n")
                stream = sock.makefile("rb")
                try:
                    while time.monotonic() < self.end:
                        sock.sendall(b"x")
                        if select.select([sock], [], [], 1.0)[0]:
                            status, _ = read_answer(stream)
                            self.count("slow", str(status))
                            break
                except OSError:
                    self.count("slow", "closed")

    def snapshot(self, pid: int) -> dict[str, Any]:
        with self.lock:
            counts = {kind: dict(sorted(c.items())) for kind, c in sorted(self.counts.items())}
            latencies = sorted(self.good_latency_ms)
        return {
            "requests": sum(sum(c.values()) for c in counts.values()),
            "status_counts": counts,
            "rss_mb": round(rss_bytes(pid) / 2**20, 1),
            "open_fds": len(os.listdir(f"/proc/{pid}/fd")),
            "good_p50_ms": percentile(latencies, 0.50),
            "good_p99_ms": percentile(latencies, 0.99),
        }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(work: Path, port: int) -> subprocess.Popen[bytes]:
    sum_model(work / "adder.onnx")
    (work / "serve.yaml").write_text(f"models: [{{ref: {work / 'adder.onnx'}, name: adder}}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    argv = [sys.executable, "-m", "modelfleet", "serve", "--config", str(work / "serve.yaml")]
    with (work / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--log-level", "warning"],
            env={**env, "MODELFLEET_HOME": str(work / "home")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: soak\r\n\r\n")
                if read_answer(sock.makefile("rb"))[0] == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"server did not start: {(work / 'serve.log').read_text()}")
        time.sleep(0.1)


def run(seconds: float, out: Path) -> dict[str, Any]:
    """Soak a server for ``seconds``; print and return the start and end snapshots."""
    with tempfile.TemporaryDirectory(prefix="modelfleet-soak-") as folder:
        port = free_port()
        proc = start_server(Path(folder), port)
        soak = Soak(port, seconds)
        try:
            summary: dict[str, Any] = {"seconds": seconds, "start": soak.snapshot(proc.pid)}
            print("start", json.dumps(summary["start"]), flush=True)
            clients = [
                threading.Thread(target=soak.loop, args=("good", request(v2_body(1))))
                for _ in range(4)
            ]
            clients += [
                threading.Thread(target=soak.loop, args=("bad", request(body), 0.01))
                for body in BAD_BODIES
            ]
            clients += [
                threading.Thread(target=soak.loop, args=("large", request(v2_body(50_000))))
                for _ in range(2)
            ]
            clients += [threading.Thread(target=soak.slow) for _ in range(20)]
            for client in clients:
                client.start()
            next_report = time.monotonic() + 30
            while any(client.is_alive() for client in clients):
                time.sleep(0.5)
                if time.monotonic() >= next_report and time.monotonic() < soak.end:
                    print(
                        f"{round(soak.end - time.monotonic())} s left",
                        json.dumps(soak.snapshot(proc.pid)),
                        flush=True,
                    )
                    next_report += 30
            summary["end"] = soak.snapshot(proc.pid)
            print("end", json.dumps(summary["end"]), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                summary["exit_code"] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                summary["exit_code"] = proc.wait()
    out.mkdir(parents=True, exist_ok=True)
    path = out / time.strftime("soak-%Y%m%d-%H%M%S.json", time.gmtime())
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"server exit code {summary['exit_code']}; summary written to {path}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = float(os.environ.get("SOAK_SECONDS", "180"))
    parser.add_argument("seconds", nargs="?", type=float, default=default)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    summary = run(args.seconds, args.out)
    lost = sum(c.get("no answer", 0) for c in summary["end"]["status_counts"].values())
    fives = sum(
        n
        for c in summary["end"]["status_counts"].values()
        for k, n in c.items()
        if k.startswith("5")
    )
    return 0 if lost == 0 and fives == 0 and summary["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
