"""A local worker's GPUs: which devices it offers, and which running job holds which.

The devices: ``--gpus N`` (or ``MODELFLEET_GPUS``) offers N of them, else every device
``CUDA_VISIBLE_DEVICES`` lists, else every GPU ``nvidia-smi -L`` lists (none when the tool is
missing or fails). Ids come from ``CUDA_VISIBLE_DEVICES`` as written there when it is set
(indexes, UUIDs or MIG ids), else they are ``0`` to ``N-1``. A job runs with
``CUDA_VISIBLE_DEVICES`` naming exactly the devices it holds; a job without GPUs gets it empty,
so it cannot take a GPU another job holds.

The order jobs get GPUs in (the queue's ``claim`` applies it): GPU jobs start in queue order,
higher priority first and then oldest. When the first GPU job in line needs more GPUs than are
free, it keeps the freed ones: no later GPU job starts on this worker before it, not even one
that would fit now, so a stream of small GPU jobs cannot starve a big one. Jobs without GPUs
do not wait for it and keep filling free slots. As the GPU jobs running on the worker end,
the GPUs it waits for come free and it starts next: it is never passed over. A job asking for
more GPUs than any live worker offers (seen in the last minute) fails at once, since it would
wait forever: start a big worker before submitting a big job, not after.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from sqlalchemy import Select
from sqlalchemy.orm import Session

from modelfleet.db import JobRow
from modelfleet.errors import JobError

logger = logging.getLogger(__name__)

_SMI_TIMEOUT_S = 30.0


def listed_devices(environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The devices ``CUDA_VISIBLE_DEVICES`` names, in its order; None when it is not set."""
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    devices: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        # CUDA stops reading the list at the first id it cannot use: "-1" hides every GPU
        if not item or (item.startswith("-") and item[1:].isdigit()):
            break
        if item not in devices:  # one device named twice is still one device
            devices.append(item)
    return tuple(devices)


def count_gpus(environ: Mapping[str, str]) -> int:
    """GPUs ``nvidia-smi -L`` lists; 0 when it is not on the PATH or fails (no driver)."""
    smi = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if smi is None:
        return 0
    try:
        done = subprocess.run(
            [smi, "-L"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("%s -L failed (%s); offering no GPUs", smi, exc)
        return 0
    if done.returncode != 0:
        logger.warning(
            "%s -L exited with %s (%s); offering no GPUs",
            smi,
            done.returncode,
            done.stderr.strip()[:200],
        )
        return 0
    # One "GPU 0: <name> (UUID: ...)" line per GPU; MIG instances are indented below theirs.
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))


def find_devices(
    count: int | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The device ids a worker offers its jobs: ``count`` of them, or all it can find."""
    env = os.environ if environ is None else environ
    listed = listed_devices(env)
    if count is None:
        if listed is not None:
            return listed
        return tuple(str(i) for i in range(count_gpus(env)))
    if count < 0:
        raise JobError(
            f"a worker cannot offer {count} GPUs", hint="give --gpus (MODELFLEET_GPUS) 0 or more"
        )
    if listed is None:
        return tuple(str(i) for i in range(count))
    if count > len(listed):
        raise JobError(
            f"the worker was told to offer {count} GPU(s) but CUDA_VISIBLE_DEVICES="
            f"{env['CUDA_VISIBLE_DEVICES']!r} names {len(listed)}",
            hint=(
                f"give --gpus (MODELFLEET_GPUS) {len(listed)} or less, or list more devices "
                "in CUDA_VISIBLE_DEVICES"
            ),
        )
    return listed[:count]


def gpu_shortage(asked: int, offered: int) -> JobError:
    """The error of a job that asks for more GPUs than any live worker offers."""
    return JobError(
        f"the job asks for {asked} GPU(s) but the biggest live worker offers {offered}, "
        "so it would wait forever",
        hint=(
            "submit it with --backend kubernetes, or start a worker on a machine that has "
            f"them with 'modelfleet worker --gpus {asked}'"
        ),
    )


def gpu_room(session: Session, in_line: Select[JobRow], gpus: int, free: int) -> int:
    """The most GPUs a job may ask for to start now on a worker with ``gpus``, ``free`` of them.

    ``in_line`` is what the worker could claim, in queue order. While the first GPU job in it
    needs more than ``free``, the answer is 0: later GPU jobs wait behind it and the GPUs that
    come free are kept for it, while jobs without GPUs still start.
    """
    first = session.scalars(in_line.where(JobRow.gpus > 0, JobRow.gpus <= gpus).limit(1)).first()
    return 0 if first is not None and first.gpus > free else free


class GpuPool:
    """The devices of one worker and the running jobs holding them."""

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = tuple(devices)
        self._held: dict[int, tuple[str, ...]] = {}

    @property
    def total(self) -> int:
        """How many devices the worker offers."""
        return len(self.devices)

    @property
    def free(self) -> int:
        """How many devices no running job holds."""
        return self.total - sum(len(held) for held in self._held.values())

    def held(self, job_id: int) -> tuple[str, ...]:
        """The devices a job holds (none once released)."""
        return self._held.get(job_id, ())

    def take(self, job_id: int, count: int) -> tuple[str, ...]:
        """Give a starting job ``count`` free devices, first in the worker's order."""
        if job_id in self._held:
            raise JobError(f"job {job_id} already holds GPU(s) {','.join(self._held[job_id])}")
        busy = {device for held in self._held.values() for device in held}
        free = [device for device in self.devices if device not in busy]
        if count > len(free):
            raise JobError(
                f"job {job_id} needs {count} GPU(s) but {len(free)} of {self.total} are free",
                hint="claim only jobs that fit the free GPUs",
            )
        self._held[job_id] = tuple(free[:count])
        return self._held[job_id]

    def release(self, job_id: int) -> None:
        """Free the devices of a job that ended, however it ended (nothing if it held none)."""
        self._held.pop(job_id, None)
