"""Workers: claim jobs their resources allow, run each in a child process, keep the lease.

The child dies with its worker (PR_SET_PDEATHSIG), so a killed worker never leaves a job
running behind the next worker's back; its lease then expires and another worker retries.
A worker told to stop (SIGTERM) stops its jobs' children and hands the jobs back to the
queue at once, so another worker starts them without waiting for the lease and without the
interrupted try counting as an attempt.
Output is shipped to the queue in chunks while the job runs (``jobs logs --follow``) and
stored whole as an artifact at the end.
A worker counts its GPUs: a job starts only when enough of them are free, sees only its own
through ``CUDA_VISIBLE_DEVICES``, and gives them back however it ends (``jobs.gpus``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelfleet.config import Settings
from modelfleet.jobs.gpus import GpuPool, find_devices
from modelfleet.jobs.queue import Job, JobQueue, JobState, check_lease
from modelfleet.registry import open_artifact_store

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen[bytes]
    result_path: Path
    lines: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    beat: float = field(default_factory=time.monotonic)
    cancelled: bool = False

    def pump(self) -> None:
        assert self.process.stdout is not None  # started with stdout=PIPE
        with self.process.stdout:
            for raw in iter(self.process.stdout.readline, b""):
                text = raw.decode("utf-8", "replace")
                with self.lock:
                    self.lines.append(text)

    def drain(self) -> str:
        with self.lock:
            chunk, self.lines = "".join(self.lines), []
        self.log.append(chunk)
        return chunk


class Worker:
    """Runs jobs from a :class:`JobQueue` until stopped.

    ``gpus`` is how many GPUs it offers; None finds them (``CUDA_VISIBLE_DEVICES``, else
    ``nvidia-smi -L``, else none).
    """

    def __init__(
        self,
        queue: JobQueue,
        settings: Settings,
        *,
        name: str | None = None,
        gpus: int | None = None,
        cpus: float | None = None,
        concurrency: int = 1,
        lease_s: float = 30.0,
        poll_s: float = 0.5,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.gpu_pool = GpuPool(find_devices(gpus))
        self.gpus = self.gpu_pool.total
        self.cpus = float(cpus if cpus is not None else os.cpu_count() or 1)
        self.concurrency = concurrency
        self.lease_s = check_lease(lease_s)
        self.poll_s = poll_s
        self.active: dict[int, _Running] = {}
        self._store = open_artifact_store(settings.artifacts, **settings.artifacts_options)

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> int:
        """Work until ``stop`` is set (or, with ``once``, until the queue has nothing for us)."""
        stop = stop or threading.Event()
        done = 0
        last_seen = 0.0
        logger.info(
            "worker %s: %d slot(s), %d GPU(s) [%s], %g CPUs",
            self.name,
            self.concurrency,
            self.gpus,
            ",".join(self.gpu_pool.devices),
            self.cpus,
        )
        while not stop.is_set():
            if time.monotonic() - last_seen > 10:
                self.queue.register_worker(self.name, gpus=self.gpus, cpus=self.cpus)
                last_seen = time.monotonic()
            # Tend first: a job that just ended frees its slot for this round's claim, so
            # ``once`` never stops while a job it could run is still queued.
            done += self._tend()
            for job in self.queue.fail_oversized(gpus=self.gpus):
                logger.warning("job %s: %s", job.id, job.error)
            self._fill()
            if once and not self.active:
                break
            stop.wait(self.poll_s)
        return done + self._hand_back()

    def _fill(self) -> None:
        while len(self.active) < self.concurrency:
            job = self.queue.claim(
                self.name,
                gpus=self.gpus,
                cpus=self.cpus,
                lease_s=self.lease_s,
                free_gpus=self.gpu_pool.free,
            )
            if job is None:
                break
            self.active[job.id] = self._start(job, self.gpu_pool.take(job.id, job.gpus))

    def _forget(self, job_id: int) -> None:
        """The job's child is gone: free its slot and its GPUs."""
        del self.active[job_id]
        self.gpu_pool.release(job_id)

    def _hand_back(self) -> int:
        """Stopping: record the jobs that already ended, release the others to the queue."""
        finished = 0
        for running in list(self.active.values()):
            code = running.process.poll()
            self._complete(running, code)
            finished += code is not None
        return finished

    def _start(self, job: Job, devices: tuple[str, ...]) -> _Running:
        logger.info(
            "job %s attempt %s: %s %s (GPUs: %s)",
            job.id,
            job.attempts,
            job.pipeline,
            job.params,
            ",".join(devices) or "none",
        )
        result = Path(tempfile.mkstemp(prefix=f"modelfleet-job-{job.id}-", suffix=".json")[1])
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "MODELFLEET_HOME": str(self.settings.home),
            "MODELFLEET_DB_URL": self.settings.db_url,
            "MODELFLEET_ARTIFACTS": self.settings.artifacts,
            # exactly the GPUs the job holds; empty hides them all from a job that has none
            "CUDA_VISIBLE_DEVICES": ",".join(devices),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelfleet.jobs.runner",
                "--job",
                str(job.id),
                "--result",
                str(result),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - sets the parent-death signal
        )
        running = _Running(job, process, result)
        threading.Thread(target=running.pump, daemon=True).start()
        return running

    def _tend(self) -> int:
        finished = 0
        for job_id, running in list(self.active.items()):
            attempt = running.job.attempts
            self.queue.append_log(job_id, attempt, running.drain())
            code = running.process.poll()
            if code is None and time.monotonic() - running.beat > self.lease_s / 3:
                running.beat = time.monotonic()
                cancel = self.queue.heartbeat(job_id, self.name, attempt, lease_s=self.lease_s)
                if cancel is None:
                    logger.warning("job %s: lease lost; stopping it", job_id)
                    self._kill(running)
                    running.process.wait()  # its GPUs are free only once it is gone
                    self._forget(job_id)
                elif cancel:
                    running.cancelled = True
                    self._kill(running)
                continue
            if code is None:
                continue
            self._complete(running, code)
            finished += 1
        return finished

    def _complete(self, running: _Running, code: int | None) -> None:
        """Record a job whose child ended, or (``code`` None) stop it and hand it back."""
        job_id, attempt = running.job.id, running.job.attempts
        if code is None:
            self._kill(running)
        running.process.wait()
        time.sleep(0.05)  # let the reader thread take the last lines
        if code is None:
            note = f"[worker {self.name} stopped; the job goes back to the queue]\n"
            self.queue.append_log(job_id, attempt, running.drain() + note)
            running.result_path.unlink(missing_ok=True)
            released = self.queue.release(job_id, self.name, attempt)
            logger.info("job %s: %s", job_id, "handed back" if released else "lease was lost")
        else:
            self.queue.append_log(job_id, attempt, running.drain())
            self._record(running, code)
        self._forget(job_id)

    @staticmethod
    def _kill(running: _Running) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.process.pid, signal.SIGKILL)

    def _record(self, running: _Running, code: int) -> None:
        job = running.job
        stored = self._store.put_bytes("".join(running.log).encode())
        try:
            result = json.loads(running.result_path.read_text() or "null")
        except (OSError, json.JSONDecodeError):
            result = None
        finally:
            running.result_path.unlink(missing_ok=True)
        if running.cancelled:
            state, error = JobState.CANCELLED, "cancelled while running"
        elif code == 0:
            state, error = JobState.SUCCEEDED, None
        else:
            state = JobState.FAILED
            error = (result or {}).get("error") or f"the job process exited with {code}"
        kept = self.queue.finish(
            job.id, self.name, job.attempts, state, result=result, error=error, log_key=stored.key
        )
        logger.info("job %s: %s%s", job.id, state.value, "" if kept else " (lease was lost)")
