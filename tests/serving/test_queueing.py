"""Batching, small-first ordering, deadlines and the queue bound, seen through real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig
from tests.serving.conftest import RunningServer
from tests.serving.load import wrk

Start = Callable[..., RunningServer]
WIDTH = 1024


def _binary(rows: np.ndarray, **parameters: object) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "parameters": parameters,
        }
    ).encode()
    return header + rows.tobytes(), {"inference-header-content-length": str(len(header))}


def _heavy_rows(n: int, value: float = 0.01) -> np.ndarray:
    return np.full((n, WIDTH), value, np.float32)


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the server until ``condition`` holds (bounded), instead of sleeping a guess."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("condition not reached")


def test_concurrent_single_rows_are_batched(
    models: Registry, served: Start, tmp_path: Path
) -> None:
    server = served(ModelConfig(ref="heavy"))
    body, headers = _binary(_heavy_rows(1))
    url = f"{server.url}/v2/models/heavy/infer"
    result = wrk(url, body, headers, connections=32, seconds=2, tmp=tmp_path)
    assert result["requests"] > 100
    assert result["errors"] == 0
    rows = server.metric("modelfleet_batch_rows_sum", model="heavy")
    batches = server.metric("modelfleet_batch_rows_count", model="heavy")
    # every row ran exactly once (+1 warm-up row; wrk may cut off requests in flight)
    assert result["requests"] + 1 <= rows <= result["requests"] + 1 + 32
    assert rows / batches > 2, f"mean batch {rows / batches:.2f} rows"


def test_one_row_overtakes_a_large_request(models: Registry, served: Start) -> None:
    server = served(ModelConfig(ref="heavy"))
    big_body, big_headers = _binary(_heavy_rows(640))

    async def race() -> list[str]:
        finished: list[str] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:

            async def call(tag: str, body: bytes, headers: dict[str, str]) -> None:
                response = await client.post(
                    "/v2/models/heavy/infer", content=body, headers=headers
                )
                assert response.status_code == 200, response.text
                finished.append(tag)

            large = asyncio.create_task(call("large", big_body, big_headers))
            core = server.app.core
            await _until(lambda: core.inflight >= 1)
            small = [
                asyncio.create_task(call(f"small{i}", *_binary(_heavy_rows(1)))) for i in range(3)
            ]
            await asyncio.gather(large, *small)
        return finished

    order = asyncio.run(race())
    assert order[-1] == "large", order
    assert server.metric("modelfleet_batch_rows_sum", model="heavy") == 640 + 3 + 1


def test_expired_deadline_answers_504_and_skips_the_work(models: Registry, served: Start) -> None:
    # Chunks of 2048 rows take ~0.3 s here, far longer than the 1 ms deadline below.
    server = served(
        ModelConfig.model_validate({"ref": "heavy", "batching": {"max_batch_rows": 2048}})
    )
    big_body, big_headers = _binary(_heavy_rows(4096))

    async def race() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            large = asyncio.create_task(
                client.post("/v2/models/heavy/infer", content=big_body, headers=big_headers)
            )
            await _until(lambda: server.app.core.inflight >= 1)
            await _until(lambda: server.app.repository.instance("heavy").batcher.busy)
            body, headers = _binary(_heavy_rows(7), timeout=1000)  # 1 ms, in microseconds
            late = await client.post("/v2/models/heavy/infer", content=body, headers=headers)
            assert (await large).status_code == 200
            return late

    late = asyncio.run(race())
    assert late.status_code == 504
    assert "deadline" in late.json()["error"]
    # The 7 rows never ran: only the large request and the warm-up row did.
    assert server.metric("modelfleet_batch_rows_sum", model="heavy") == 4096 + 1
    header = server.http.post(
        "/v2/models/heavy/infer",
        content=_binary(_heavy_rows(1))[0],
        headers={**_binary(_heavy_rows(1))[1], "x-timeout-ms": "5000"},
    )
    assert header.status_code == 200


def test_full_queue_answers_503_with_retry_after(models: Registry, served: Start) -> None:
    config = ModelConfig.model_validate(
        {"ref": "heavy", "scheduler": {"max_queued_requests": 2, "retry_after_s": 2}}
    )
    server = served(config)
    big_body, big_headers = _binary(_heavy_rows(256))

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            first = asyncio.create_task(
                client.post("/v2/models/heavy/infer", content=big_body, headers=big_headers)
            )
            await _until(lambda: server.app.repository.instance("heavy").batcher.busy)
            others = await asyncio.gather(
                *(
                    client.post("/v2/models/heavy/infer", content=big_body, headers=big_headers)
                    for _ in range(4)
                )
            )
            return [await first, *others]

    responses = asyncio.run(flood())
    statuses = sorted(r.status_code for r in responses)
    assert 503 in statuses and 200 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "2"
    assert "overloaded" in refused.json()["error"]


@pytest.mark.parametrize("max_wait_ms", [0.0, 20.0])
def test_batching_settings_are_honoured(
    models: Registry, served: Start, max_wait_ms: float
) -> None:
    config = ModelConfig.model_validate(
        {"ref": "adder", "batching": {"max_batch_rows": 4, "max_wait_ms": max_wait_ms}}
    )
    server = served(config)
    body = {
        "inputs": [
            {"name": "X", "shape": [10, 3], "datatype": "FP32", "data": np.ones(30).tolist()}
        ]
    }
    out = server.http.post(
        "/v2/models/adder/infer", json=body, headers={"cache-control": "no-cache"}
    )
    assert out.json()["outputs"][0]["data"] == [3.0] * 10
    # 10 rows with at most 4 per call: three ONNX calls, never more rows than the limit.
    assert server.metric("modelfleet_batch_rows_bucket", model="adder", le="4.0") == (
        server.metric("modelfleet_batch_rows_count", model="adder")
    )
