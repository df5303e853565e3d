"""Serving benchmark: modelfleet against Seldon MLServer and BentoML, and the two bounds.

One run, one machine, one model (the random forest of ``model.py`` frozen to ONNX), one
load generator (wrk; the mixed load uses the closed-loop client of ``load.py``):

* the HTTP floor: a bare ASGI app returning fixed JSON on uvicorn + uvloop + httptools;
* the compute limit: raw in-process ONNX Runtime rows/s at batch 1 and 64, one thread;
* modelfleet, MLServer (adaptive batching off and on) and BentoML (batchable off and on),
  single-row V2/JSON requests at concurrency 1, 16 and 64, after a warm-up;
* modelfleet with 64-row requests, JSON and binary, in rows/s against the raw limit;
* a mixed load (90 % 1-row, 10 % 1000-row): the 1-row p99 with and without large requests.

Every server runs one process and one ONNX Runtime thread, on loopback. Results print as
one table with the ratios the targets are stated in, and are saved as JSON.

    python benchmarks/serving.py [--seconds 15] [--warmup 3] [--skip-peers]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks.load import mixed_run, wait_ready, wrk_run
from benchmarks.model import build_model
from benchmarks.peers import free_port, start_bentoml, start_mlserver

CONCURRENCY = (1, 16, 64)
WATCH_OFF = "modelfleet, monitoring off"


def raw_onnxruntime(model: Path, X: np.ndarray) -> dict[str, float]:
    """Rows/s of in-process ONNX Runtime, one intra-op thread, median of repeated timings."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    result = {}
    for batch in (1, 64):
        feed = {"input": X[:batch]}
        for _ in range(200):
            session.run(None, feed)
        samples = []
        for _ in range(15):
            calls = 2000 if batch == 1 else 300
            start = time.perf_counter()
            for _ in range(calls):
                session.run(None, feed)
            samples.append((time.perf_counter() - start) / calls)
        per_call = statistics.median(samples)
        result[f"batch_{batch}_us"] = per_call * 1e6
        result[f"batch_{batch}_rows_per_s"] = batch / per_call
    return result


def v2_json(rows: np.ndarray) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        },
        separators=(",", ":"),
    ).encode()


def v2_binary(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        },
        separators=(",", ":"),
    ).encode()
    return header + rows.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def mixed_bodies(X: np.ndarray) -> tuple[bytes, bytes, dict[str, str]]:
    """Binary 1-row and 1000-row requests whose JSON headers are padded to one length.

    The mixed-load client sends one set of headers for both kinds, and JSON allows the
    trailing spaces, so both carry the same Inference-Header-Content-Length.
    """

    def header(rows: np.ndarray) -> str:
        return json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": list(rows.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": rows.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            },
            separators=(",", ":"),
        )

    small, large = header(X[:1]), header(X[:1000])
    width = max(len(small), len(large))
    return (
        small.ljust(width).encode() + X[:1].tobytes(),
        large.ljust(width).encode() + X[:1000].tobytes(),
        {"Inference-Header-Content-Length": str(width)},
    )


class Process:
    """A server started as a subprocess of this benchmark."""

    def __init__(self, argv: list[str], url: str, log: Path, env: dict[str, str]) -> None:
        self.url = url
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start_floor(work: Path) -> Process:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.floor_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
        "--no-proxy-headers",  # as modelfleet's server runs
    ]
    server = Process(
        argv,
        f"http://127.0.0.1:{port}",
        work / "floor.log",
        {**os.environ, "PYTHONPATH": str(ROOT.parent)},
    )
    wait_ready(server.url + "/", timeout=60)
    return server


def start_modelfleet(
    model: Path, work: Path, *extra: str, refs: tuple[str, ...] = ("rf",)
) -> Process:
    home = work / "modelfleet-home"
    env = {**os.environ, "MODELFLEET_HOME": str(home)}
    if not (home / "registry.db").exists():
        subprocess.run(
            [sys.executable, "-m", "modelfleet", "register", str(model), "--name", "rf"],
            env=env,
            check=True,
            capture_output=True,
        )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "modelfleet",
        "serve",
        *refs,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]
    server = Process(argv, f"http://127.0.0.1:{port}", work / "modelfleet.log", env)
    wait_ready(server.url + "/v2/health/ready", timeout=120)
    return server


def measure(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    if warmup > 0:
        wrk_run(url, body, headers, concurrency=concurrency, duration_s=warmup)
    result = wrk_run(url, body, headers, concurrency=concurrency, duration_s=seconds)
    return {k: result[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "errors", "requests")}


def sweep(
    name: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
) -> None:
    for c in CONCURRENCY:
        result = measure(url, body, headers, c, args.seconds, args.warmup)
        rows.append({"server": name, "request": "1 row", "concurrency": c, **result})
        print(
            f"  {name:32} c={c:<3} {result['requests_per_s']:9.0f} req/s  "
            f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
            f"errors {result['errors']}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per point")
    parser.add_argument("--skip-peers", action="store_true", help="modelfleet and bounds only")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelfleet-bench-"))
    model, X = build_model(ROOT / ".cache")
    one = v2_json(X[:1])
    json_headers = {"Content-Type": "application/json"}
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}

    print("raw ONNX Runtime (in process, 1 thread)", flush=True)
    extra["raw"] = raw = raw_onnxruntime(model, X)
    print(
        f"  batch 1: {raw['batch_1_us']:.1f} us/call ({raw['batch_1_rows_per_s']:.0f} rows/s); "
        f"batch 64: {raw['batch_64_us']:.1f} us/call ({raw['batch_64_rows_per_s']:.0f} rows/s)"
    )

    print("HTTP floor (bare ASGI, fixed JSON)", flush=True)
    floor = start_floor(work)
    try:
        sweep("http floor", floor.url + "/", one, json_headers, args, rows)
    finally:
        floor.stop()

    print("modelfleet (1 worker)", flush=True)
    server = start_modelfleet(model, work)
    try:
        infer = server.url + "/v2/models/rf/infer"
        sweep("modelfleet", infer, one, json_headers, args, rows)
        for label, (body, headers) in {
            "64 rows JSON": (v2_json(X[:64]), json_headers),
            "64 rows binary": v2_binary(X[:64]),
        }.items():
            result = measure(infer, body, headers, 16, args.seconds, args.warmup)
            result["rows_per_s"] = result["requests_per_s"] * 64
            rows.append({"server": "modelfleet", "request": label, "concurrency": 16, **result})
            print(
                f"  modelfleet {label:21} c=16  {result['rows_per_s']:9.0f} rows/s  "
                f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms",
                flush=True,
            )
        for fmt, (small, large, headers) in {
            "binary": mixed_bodies(X),
            "JSON": (v2_json(X[:1]), v2_json(X[:1000]), json_headers),
        }.items():
            for fraction in (0.0, 0.1):
                mixed_run(
                    infer,
                    small,
                    large,
                    headers,
                    large_fraction=fraction,
                    concurrency=16,
                    duration_s=args.warmup or 1,
                )
                result = mixed_run(
                    infer,
                    small,
                    large,
                    headers,
                    large_fraction=fraction,
                    concurrency=16,
                    duration_s=args.seconds,
                )
                extra[f"mixed_{fmt}_{fraction}"] = result
                print(
                    f"  mixed {fmt:6} {fraction:4.0%} large: 1-row p50 "
                    f"{result['small']['p50_ms']:.2f} ms p99 {result['small']['p99_ms']:.2f} ms"
                    f" ({result['small']['count']} small, {result['large']['count']} large, "
                    f"{result['errors']} errors)",
                    flush=True,
                )
    finally:
        server.stop()

    print(f"{WATCH_OFF} (what monitoring costs)", flush=True)
    config = work / "watch-off.yaml"
    config.write_text("models: [{ref: rf, watch: {enabled: false}}]\n")
    server = start_modelfleet(model, work, "--config", str(config), refs=())
    try:
        sweep(WATCH_OFF, server.url + "/v2/models/rf/infer", one, json_headers, args, rows)
    finally:
        server.stop()

    if not args.skip_peers:
        for name, start in (
            ("MLServer", lambda p, w: start_mlserver(model, p, adaptive_batching=False, workdir=w)),
            (
                "MLServer adaptive batching",
                lambda p, w: start_mlserver(model, p, adaptive_batching=True, workdir=w),
            ),
            ("BentoML", lambda p, w: start_bentoml(model, p, batchable=False, workdir=w)),
            ("BentoML batchable", lambda p, w: start_bentoml(model, p, batchable=True, workdir=w)),
        ):
            print(name, flush=True)
            folder = work / name.replace(" ", "-")
            folder.mkdir()
            peer = start(free_port(), folder)
            try:
                sweep(name, peer.infer_url, peer.body(X[:1]), peer.headers, args, rows)
            finally:
                peer.stop()

    args.out.mkdir(exist_ok=True)
    (args.out / "serving-latest-raw.json").write_text(json.dumps({"rows": rows, **extra}))
    report(rows, extra)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"serving-{stamp}.json").write_text(json.dumps({"rows": rows, **extra}, indent=2))
    print(f"saved {args.out / f'serving-{stamp}.json'}")
    return 0


def _point(
    rows: list[dict[str, Any]], server: str, c: int, request: str = "1 row"
) -> dict[str, Any]:
    return next(
        r
        for r in rows
        if r["server"] == server and r["concurrency"] == c and r["request"] == request
    )


def report(rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    print()
    print(
        f"{'server':32} {'request':15} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6}"
    )
    for r in rows:
        print(
            f"{r['server']:32} {r['request']:15} {r['concurrency']:>3} {r['requests_per_s']:9.0f} "
            f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:>6}"
        )
    print()
    mf64 = _point(rows, "modelfleet", 64)
    floor64, floor1 = _point(rows, "http floor", 64), _point(rows, "http floor", 1)
    mf1 = _point(rows, "modelfleet", 1)
    peers = [
        r
        for r in rows
        if r["concurrency"] == 64
        and r["request"] == "1 row"
        and not r["server"].startswith(("modelfleet", "http floor"))
    ]
    model_ms = extra["raw"]["batch_1_us"] / 1000
    checks = []
    if peers:
        best = max(peers, key=lambda r: r["requests_per_s"])
        ratio = mf64["requests_per_s"] / best["requests_per_s"]
        checks.append((f"c=64 req/s vs best peer ({best['server']})", ratio, ">= 5x", ratio >= 5))
    ratio = mf64["requests_per_s"] / floor64["requests_per_s"]
    checks.append(("c=64 req/s vs HTTP floor", ratio, ">= 0.5", ratio >= 0.5))
    bound = 2 * floor1["p99_ms"] + model_ms
    checks.append(
        (
            f"c=1 p99 {mf1['p99_ms']:.3f} ms vs 2 x floor p99 + model = {bound:.3f} ms",
            mf1["p99_ms"] / bound,
            "<= 1",
            mf1["p99_ms"] <= bound,
        )
    )
    binary = _point(rows, "modelfleet", 16, "64 rows binary")
    ratio = binary["rows_per_s"] / extra["raw"]["batch_64_rows_per_s"]
    checks.append(("64-row binary rows/s vs raw ORT batch 64", ratio, ">= 0.5", ratio >= 0.5))
    for fmt in ("binary", "JSON"):
        calm = extra[f"mixed_{fmt}_0.0"]["small"]["p99_ms"]
        busy = extra[f"mixed_{fmt}_0.1"]["small"]["p99_ms"]
        label = f"{fmt} 1-row p99 with 10% large ({busy:.2f} ms) vs without ({calm:.2f} ms)"
        checks.append((label, busy / calm, "<= 3", busy / calm <= 3))
    off1, off64 = _point(rows, WATCH_OFF, 1), _point(rows, WATCH_OFF, 64)
    print(
        "monitoring (request ids, predictions kept for feedback, class counts) costs: "
        f"c=64 {mf64['requests_per_s']:.0f} vs {off64['requests_per_s']:.0f} req/s without "
        f"({mf64['requests_per_s'] / off64['requests_per_s']:.2f}); c=1 p99 "
        f"{mf1['p99_ms']:.2f} vs {off1['p99_ms']:.2f} ms"
    )
    for label, value, target, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label:72} {value:7.2f}  (target {target})")
    extra["checks"] = [{"check": c[0], "value": c[1], "target": c[2], "met": c[3]} for c in checks]


if __name__ == "__main__":
    sys.exit(main())
