"""A test pipeline that notes when it starts and ends, and the GPUs it sees, in ``record``.

It holds on until the file ``gate`` exists (when given), so a test decides when it ends.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from modelfleet.pipeline import Pipeline, step

HOLD_AT_MOST_S = 120.0


def _note(record: Path, event: str) -> None:
    line = {
        "event": event,
        "at": time.monotonic(),  # CLOCK_MONOTONIC: one clock for every process of the machine
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
    }
    with record.open("a") as f:
        f.write(json.dumps(line) + "\n")


@step(cache=False)
def hold(record: str, gate: str = "", fail: bool = False) -> dict[str, float]:
    path = Path(record)
    _note(path, "start")
    deadline = time.monotonic() + HOLD_AT_MOST_S
    while gate and not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} was never created")
        time.sleep(0.02)
    _note(path, "end")
    if fail:
        raise RuntimeError("this GPU job fails on purpose")
    return {"held": 1.0}


pipeline = Pipeline(name="gpu-hold", steps=[hold])
