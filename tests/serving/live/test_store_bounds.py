"""The predictions store stays within its byte budget: huge requests, floods, old rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.registry import Registry
from modelfleet.serving.live import FeedbackStore
from modelfleet.serving.settings import ModelConfig, MonitoringConfig
from tests.models import logistic_pipeline
from tests.serving.conftest import RunningServer

Served = Callable[..., RunningServer]
MiB = 1 << 20


@pytest.fixture
def iris(registry: Registry) -> Registry:
    model, X, _ = logistic_pipeline()
    mf.register(model, name="iris", sample_input=X, registry=registry)
    return registry


def _body(rows: int, seed: int) -> bytes:
    """A V2 request of ``rows`` iris rows, different per seed (no cache hit, no reused id)."""
    values = np.round(np.random.default_rng(seed).uniform(0, 7, size=rows * 4), 1)
    data = ",".join(map(str, values.tolist()))
    return (
        f'{{"inputs":[{{"name":"input","shape":[{rows},4],"datatype":"FP32","data":[{data}]}}]}}'
    ).encode()


def _store_bytes(state: Path) -> int:
    """What the store holds on disk: the SQLite file and its WAL."""
    return sum(p.stat().st_size for p in state.glob("predictions.sqlite3*") if p.exists())


def _infer(server: RunningServer, body: bytes) -> str:
    response = server.http.post(
        "/v2/models/iris/infer", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _settle() -> None:
    """Let the watcher flush what is pending (flush interval 0.1 s)."""
    time.sleep(0.5)


def test_huge_requests_record_their_first_rows_only(
    iris: Registry, served: Served, tmp_path: Path
) -> None:
    """20 requests of 100k rows (the issue's flood, shortened) leave the store small."""
    state = tmp_path / "state"
    monitoring = MonitoringConfig(state_dir=str(state), flush_interval_s=0.1, log_sample=1.0)
    server = served(ModelConfig(ref="iris"), monitoring=monitoring)
    ids = [_infer(server, _body(100_000, seed)) for seed in range(20)]
    _settle()
    # Before the cap every request kept its 100k classes (~200 KB; the store reached 7.7 MiB)
    # and logged all its tensors (~13 MB a line).
    assert _store_bytes(state) < 3 * MiB
    logs = sum(p.stat().st_size for p in state.glob("predictions-*.jsonl*"))
    assert logs < 20 * 200_000
    dropped = server.metric("modelfleet_store_dropped_rows_total", reason="over_cap")
    assert dropped == 20 * (100_000 - 1024)
    # Feedback still works on a huge request: all its labels are checked, the first rows judged.
    response = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids[-1:], "labels": [[0] * 100_000]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 1024
    short = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids[:1], "labels": [[0] * 1024]}
    )
    assert short.status_code == 400 and "100000 row(s)" in short.json()["error"]


def test_a_flood_keeps_the_store_within_its_byte_budget(
    iris: Registry, served: Served, tmp_path: Path
) -> None:
    """4 MB of records into a 1 MiB budget: oldest evicted, file and WAL stay within it."""
    state = tmp_path / "state"
    monitoring = MonitoringConfig(
        state_dir=str(state),
        flush_interval_s=0.1,
        max_store_bytes=MiB,
        max_recorded_rows=20_000,
    )
    server = served(ModelConfig(ref="iris"), monitoring=monitoring)
    ids, peak = [], 0
    for seed in range(100):
        ids.append(_infer(server, _body(20_000, seed)))
        peak = max(peak, _store_bytes(state))
    _settle()
    peak = max(peak, _store_bytes(state))
    assert peak <= MiB * 1.1, f"store reached {peak / MiB:.2f} MiB"
    evicted = server.metric("modelfleet_store_dropped_rows_total", reason="evicted")
    assert evicted >= 50 * 20_000
    recent = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids[-1:], "labels": [[1] * 20_000]}
    )
    assert recent.status_code == 200, recent.text
    oldest = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids[:1], "labels": [[1] * 20_000]}
    )
    assert oldest.status_code == 404


def test_old_predictions_and_feedback_are_pruned_by_age(tmp_path: Path) -> None:
    store = FeedbackStore(
        tmp_path / "p.sqlite3",
        retention_s=3600,
        max_predictions=1000,
        feedback_retention_s=7200,
    )
    try:
        now = time.time()
        store.add_predictions([("m", f"r{i}", "1", now, "[1]", 1) for i in range(10)])
        store.add_feedback("m", [f"r{i}" for i in range(10)], [1] * 10, "int")
        assert store.counts() == {"predictions": 10, "feedback": 10}
        store.prune(now + 3601)  # predictions past retention; feedback not yet
        assert store.counts() == {"predictions": 0, "feedback": 10}
        store.prune(now + 7201)
        assert store.counts() == {"predictions": 0, "feedback": 0}
    finally:
        store.close()


def test_a_store_over_a_smaller_budget_shrinks_when_opened(tmp_path: Path) -> None:
    """A file grown under an older, larger budget (or older code) is cut down on start."""
    path = tmp_path / "p.sqlite3"
    big = FeedbackStore(path, retention_s=3600, max_predictions=10**6, max_bytes=64 * MiB)
    classes = "[" + ",".join(["1"] * 2000) + "]"
    now = time.time()
    big.add_predictions([("m", f"r{i}", "1", now + i, classes, 2000) for i in range(1500)])
    big.close()
    assert path.stat().st_size > 5 * MiB
    small = FeedbackStore(path, retention_s=3600, max_predictions=10**6, max_bytes=2 * MiB)
    try:
        assert _store_bytes(tmp_path) <= 2 * MiB * 1.1
        held = small.counts()["predictions"]
        assert 0 < held < 1500
        # the newest were kept: feedback on the last prediction still joins
        assert small.add_feedback("m", ["r1499"], [[1] * 2000], "int").rows == 2000
    finally:
        small.close()
