"""Big JSON bodies vs small requests: what two clients looping ~30 MB V2 JSON do to a third.

Runs a real ``modelfleet serve`` subprocess on a free loopback port (issue 10 item 7). Two
clients send ~30 MB JSON inference bodies (just under the 32 MiB default limit) over and
over for ``SECONDS`` (default 15), while a third sends 1-row requests back to back. Prints
the small requests' p50/p99, the big ones' count and the server's peak RSS (VmHWM), writes
the run as JSON to benchmarks/results/, and, given ``--compare`` an earlier result, prints
both side by side. Stops by itself and reaps the server.

    python benchmarks/bigjson.py [SECONDS] [--label NAME] [--compare RESULT.json]
"""

from __future__ import annotations

import argparse
import json
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

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import percentile, read_answer, request, start_server

ROOT = Path(__file__).resolve().parent
BIG_ROWS = 1_100_000  # random FP32 rows of 3: about 30 MB of JSON


def big_body(rows: int = BIG_ROWS) -> bytes:
    data = np.random.default_rng(7).random(rows * 3, dtype=np.float32) * 100
    doc = {"inputs": [{"name": "X", "shape": [rows, 3], "datatype": "FP32", "data": data}]}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def small_body() -> bytes:
    return b'{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}'


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Run:
    """The three clients and what they saw."""

    def __init__(self, port: int, seconds: float) -> None:
        self.port = port
        self.end = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.statuses: dict[str, Counter[str]] = {"big": Counter(), "small": Counter()}
        self.small_ms: list[float] = []

    def loop(self, kind: str, data: bytes) -> None:
        while time.monotonic() < self.end:
            with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
                stream = sock.makefile("rb")
                closes = False
                while not closes and time.monotonic() < self.end:
                    started = time.perf_counter()
                    try:
                        sock.sendall(data)
                        status, closes = read_answer(stream)
                    except OSError:
                        with self.lock:
                            self.statuses[kind]["no answer"] += 1
                        break
                    with self.lock:
                        self.statuses[kind][str(status)] += 1
                        if kind == "small" and status == 200:
                            self.small_ms.append((time.perf_counter() - started) * 1e3)


def run(seconds: float, label: str) -> dict[str, Any]:
    big, small = request(big_body()), request(small_body())
    with tempfile.TemporaryDirectory(prefix="modelfleet-bigjson-") as folder:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        proc = start_server(Path(folder), port)
        try:
            idle = peak_rss_mb(proc.pid)
            bench = Run(port, seconds)
            clients = [threading.Thread(target=bench.loop, args=("big", big)) for _ in range(2)]
            clients.append(threading.Thread(target=bench.loop, args=("small", small)))
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            latencies = sorted(bench.small_ms)
            summary: dict[str, Any] = {
                "label": label,
                "seconds": seconds,
                "big_body_bytes": len(big),
                "statuses": {k: dict(sorted(c.items())) for k, c in bench.statuses.items()},
                "small_p50_ms": percentile(latencies, 0.50),
                "small_p99_ms": percentile(latencies, 0.99),
                "small_answered": len(latencies),
                "idle_peak_rss_mb": idle,
                "peak_rss_mb": peak_rss_mb(proc.pid),
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return summary


def side_by_side(before: dict[str, Any], after: dict[str, Any]) -> None:
    keys = ["small_p50_ms", "small_p99_ms", "small_answered", "peak_rss_mb"]
    print(f"{'':16}{before['label']:>20}{after['label']:>20}")
    for key in keys:
        print(f"{key:16}{json.dumps(before.get(key)):>20}{json.dumps(after.get(key)):>20}")
    for summary in (before, after):
        print(f"statuses {summary['label']}: {json.dumps(summary['statuses'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=15.0)
    parser.add_argument("--label", default="run")
    parser.add_argument("--compare", type=Path, help="an earlier result to print beside this")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    summary = run(args.seconds, args.label)
    print(json.dumps(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = args.out / f"bigjson-{args.label}-{stamp}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {path}")
    if args.compare is not None:
        side_by_side(json.loads(args.compare.read_text()), summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
