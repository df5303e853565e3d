"""Smoke test of the benchmark's peers: does each configuration serve the model correctly?

Run from the repository root with the project's interpreter, after
``benchmarks/peers/setup.sh``::

    .venv/bin/python benchmarks/check_peers.py [--duration 3] [--concurrency 16]

Builds the forest into a temporary folder, then for each of the four peer configurations
(MLServer with adaptive batching off and on, BentoML plain and batchable), one at a time,
on a free loopback port: starts it, checks a 1-row and a 64-row answer against onnxruntime
run locally, runs ``wrk`` for ``--duration`` seconds at ``--concurrency`` with the 1-row
body, prints one line, and stops it. Exits 1 if any configuration failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import wrk_run
from model import build_model
from peers import Peer, free_port, start_bentoml, start_mlserver

Starter = Callable[[Path, int, Path], Peer]

CONFIGS: list[tuple[str, Starter]] = [
    (
        "mlserver",
        lambda m, p, w: start_mlserver(m, p, adaptive_batching=False, workdir=w),
    ),
    (
        "mlserver+adaptive-batching",
        lambda m, p, w: start_mlserver(m, p, adaptive_batching=True, workdir=w),
    ),
    ("bentoml", lambda m, p, w: start_bentoml(m, p, batchable=False, workdir=w)),
    ("bentoml+batchable", lambda m, p, w: start_bentoml(m, p, batchable=True, workdir=w)),
]


def _reference(model_path: Path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": rows})
    return labels, probabilities


def _post(peer: Peer, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    request = urllib.request.Request(
        peer.infer_url, data=peer.body(rows), headers=peer.headers, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return peer.decode(response.read())


def _check_answer(peer: Peer, model_path: Path, rows: np.ndarray) -> None:
    labels, probabilities = _post(peer, rows)
    want_labels, want_probabilities = _reference(model_path, rows)
    if labels.shape != want_labels.shape or not np.array_equal(labels, want_labels):
        raise AssertionError(f"{peer.name}: labels differ for {len(rows)} rows")
    if not np.allclose(probabilities, want_probabilities, rtol=0, atol=1e-6):
        raise AssertionError(f"{peer.name}: probabilities differ for {len(rows)} rows")


def _run_one(
    name: str,
    starter: Starter,
    model_path: Path,
    rows: np.ndarray,
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    port = free_port()
    started = time.monotonic()
    peer = starter(model_path, port, workdir / name)
    startup_s = time.monotonic() - started
    try:
        _check_answer(peer, model_path, rows[:1])
        _check_answer(peer, model_path, rows[:64])
        result = wrk_run(
            peer.infer_url,
            peer.body(rows[:1]),
            peer.headers,
            concurrency=args.concurrency,
            duration_s=args.duration,
            threads=args.threads,
        )
        if not peer.alive():
            raise RuntimeError(f"{name} died under load:\n{peer.log_tail()}")
    finally:
        peer.stop()
    return {"config": name, "port": port, "startup_s": startup_s, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="wrk seconds (whole)")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--only", action="append", help="run only this configuration")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", type=Path, help="keep model and peer logs in this folder")
    args = parser.parse_args(argv)

    configs = [c for c in CONFIGS if not args.only or c[0] in args.only]
    if not configs:
        parser.error(f"--only must name one of {[c[0] for c in CONFIGS]}")

    results: list[dict[str, Any]] = []
    failures = 0
    with tempfile.TemporaryDirectory(prefix="check-peers-") as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        model_path, rows = build_model(workdir / "model")
        print(f"model {model_path} ({model_path.stat().st_size} bytes), rows {rows.shape}")
        print(f"wrk: 1-row body, {args.duration:g}s, concurrency {args.concurrency}")
        for name, starter in configs:
            try:
                result = _run_one(name, starter, model_path, rows, workdir, args)
            except Exception as exc:
                failures += 1
                print(f"{name:28s} FAILED: {exc}")
                results.append({"config": name, "failed": str(exc)})
                continue
            results.append(result)
            print(
                f"{name:28s} {result['requests_per_s']:8.0f} req/s  "
                f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                f"errors {result['errors']}/{result['requests']}  "
                f"(started in {result['startup_s']:.1f}s)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
