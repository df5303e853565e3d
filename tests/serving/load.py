"""Concurrent load from a separate process, so the client does not share the server's GIL."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from typing import Any


async def _fire(
    url: str, path: str, body: bytes, headers: dict[str, str], n: int, conc: int
) -> list[int]:
    import httpx

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        statuses: list[int] = []

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                response = await client.post(path, content=body, headers=headers)
                statuses.append(response.status_code)

        await asyncio.gather(*(worker() for _ in range(conc)))
        return statuses


def _main(args: tuple[Any, ...], out: Any) -> None:
    out.put(asyncio.run(_fire(*args)))


def fire(
    url: str, path: str, body: bytes, headers: dict[str, str], *, n: int, concurrency: int
) -> list[int]:
    """Send ``n`` POSTs with ``concurrency`` connections from a child process; their statuses."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_main, args=((url, path, body, headers, n, concurrency), out))
    proc.start()
    statuses: list[int] = out.get(timeout=300)
    proc.join(timeout=60)
    return statuses


def wrk(
    url: str, body: bytes, headers: dict[str, str], *, connections: int, seconds: int, tmp: Any
) -> dict[str, int]:
    """Closed-loop POST load with Debian's wrk; returns requests sent and non-2xx answers."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed; run 'make test' (it installs Debian's wrk)")
    folder = Path(tmp)
    (folder / "body.bin").write_bytes(body)
    lines = [
        f'local f = io.open("{folder / "body.bin"}", "rb")',
        'wrk.method = "POST"',
        "wrk.body = f:read('*all')",
        "f:close()",
        *(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()),
    ]
    (folder / "post.lua").write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(folder / "post.lua"), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    requests = re.search(r"(\d+) requests in", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return {
        "requests": int(requests[1]) if requests else 0,
        "errors": int(errors[1]) if errors else 0,
    }
