"""A test pipeline whose first attempt is slow (so a worker can be killed mid-job)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from modelfleet.pipeline import Pipeline, step


@step(cache=False)
def work(marker: str, seconds: float = 30.0, fail: bool = False) -> dict[str, float]:
    path = Path(marker)
    first = not path.exists()
    with path.open("a") as f:
        f.write(f"{os.getpid()}\n")
    print(f"attempt running in pid {os.getpid()} ({'first' if first else 'retry'})", flush=True)
    if fail:
        raise RuntimeError("this job fails on purpose")
    deadline = time.monotonic() + (seconds if first else 0.2)
    while time.monotonic() < deadline:
        time.sleep(0.05)
    print("work done", flush=True)
    return {"attempts_seen": float(len(path.read_text().split()))}


pipeline = Pipeline(name="slow", steps=[work])
