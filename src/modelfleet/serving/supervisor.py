"""Several server processes behind one port: uvicorn's supervisor, running our own workers.

uvicorn's ``Multiprocess`` gives the parent process what we need and keep: one socket, bound
once and shared by every worker (a second server cannot join the port); a ping over a pipe
that finds hung workers; SIGTERM and SIGINT turned into a SIGTERM (our drain) to each worker
and a wait for all of them; SIGHUP, a rolling restart; SIGTTIN and SIGTTOU, one worker more
or less. What it lacks, and this module adds:

- our server in the workers. Since uvicorn 0.51 a worker always runs a plain
  ``uvicorn.Server`` built from the config pickled into it, with no hook for another server.
  Ours run what a factory builds inside the worker (the ``DrainingServer`` with its own app,
  sessions and lame-duck drain), so the four places that create a worker are overridden:
  the start, SIGTTIN, the replacement of a dead worker and the SIGHUP restart;
- workers that die with the supervisor. A worker asks Linux for a SIGTERM when its parent
  dies, even by SIGKILL (``PR_SET_PDEATHSIG``), so no orphan keeps serving the port with
  an old config and old tokens;
- a backoff. uvicorn replaces a dead worker on the next half-second tick, forever; here a
  worker that keeps dying young waits longer and longer (up to 30 s) before its next try;
- a ping that notices a worker dying while it waits for the answer, instead of blocking the
  supervisor (and its signals) for the whole health-check timeout;
- whole metrics. A dead worker's live Prometheus gauges are dropped from the shared files;
- a shutdown that resets no queued connection: the supervisor closes its copy of the socket
  before it signals the workers, so the last worker to stop listening really closes it, and
  takes what the kernel queued on it first (``DrainingServer.shutdown``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from socket import socket
from typing import cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from modelfleet.serving.metrics import mark_process_dead

logger = logging.getLogger(__name__)

ServerFactory = Callable[[], uvicorn.Server]
"""Builds a worker's server inside the worker; pickled by reference, so module-level."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_STABLE_S = 10.0  # a worker that lived this long resets its slot's backoff
_MAX_BACKOFF_S = 30.0
_READY_TIMEOUT_S = 300.0  # a SIGHUP replacement loads and warms up every model first


class WorkerProcess(Process):
    """One worker: uvicorn's pinged child process, serving the server ``factory`` builds."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket],
        factory: ServerFactory,
        streak: int = 0,
    ) -> None:
        self.factory = factory
        self.supervisor_pid = os.getpid()
        self.streak = streak  # young deaths in a row in this slot, handed to the replacement
        self.started_at = 0.0
        self.retry_at: float | None = None  # set once found dead: when to start the next one
        self._serving: uvicorn.Server | None = None
        super().__init__(config, sockets)

    def start(self) -> None:
        """Start the worker process."""
        self.started_at = time.monotonic()
        super().start()

    def is_alive(self, timeout: float = 5) -> bool:
        """Ping the worker; one that dies before it answers is seen at once, not at timeout."""
        if not self.process.is_alive():
            return False
        try:
            self.parent_conn.send(b"ping")
            # The supervisor holds both ends of the pipe, so a dead worker never closes it:
            # wait on the process too.
            answered = self.parent_conn in wait([self.parent_conn, self.process.sentinel], timeout)
            if answered:
                self.parent_conn.recv()
        except (OSError, EOFError):
            return False
        return answered

    def pong(self) -> None:
        """Answer one ping with whether this worker's server is serving yet."""
        self.child_conn.recv()
        self.child_conn.send(self._serving is not None and self._serving.started)

    def target(self, sockets: list[socket] | None = None) -> None:
        """The worker's main: build the server, serve on the shared sockets, exit with it."""
        _die_with(self.supervisor_pid)
        threading.Thread(target=self.always_pong, name="pong", daemon=True).start()
        try:
            self._serving = self.factory()
        except Exception:
            # It would fail the same way on every restart: stop the supervisor instead.
            logger.exception("worker %d could not build its server", os.getpid())
            raise SystemExit(STARTUP_FAILURE) from None
        try:
            self._serving.run(sockets)
        finally:
            mark_process_dead(os.getpid())
        if not self._serving.started:
            raise SystemExit(STARTUP_FAILURE)


def _die_with(supervisor_pid: int) -> None:
    """Have this worker SIGTERMed (so it drains) when the supervisor dies, even by SIGKILL."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(
            target=_watch_parent, args=(supervisor_pid,), name="parent-watch", daemon=True
        ).start()
    # The supervisor may have died before the request above; nobody would signal us then.
    if os.getppid() != supervisor_pid:
        raise SystemExit(0)


def _watch_parent(supervisor_pid: int) -> None:
    while os.getppid() == supervisor_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor(Multiprocess):
    """uvicorn's multi-process supervisor whose workers run the server ``factory`` builds."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket], factory: ServerFactory
    ) -> None:
        super().__init__(config, sockets)
        self.factory = factory
        self.startup_failed = False

    def _spawn(self, streak: int = 0) -> WorkerProcess:
        worker = WorkerProcess(self.config, self.sockets, self.factory, streak)
        worker.start()
        return worker

    def init_processes(self) -> None:
        """Start the configured number of workers."""
        self.processes = [self._spawn() for _ in range(self.processes_num)]

    def handle_ttin(self) -> None:
        """SIGTTIN: one worker more."""
        logger.info("SIGTTIN: starting one more worker")
        self.processes_num += 1
        self.processes.append(self._spawn())

    def keep_subprocess_alive(self) -> None:
        """Replace dead or hung workers, later and later when they keep dying young."""
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            worker = cast(WorkerProcess, process)  # every worker is made by _spawn
            if worker.retry_at is None:
                if worker.is_alive(timeout=self.config.timeout_worker_healthcheck):
                    continue
                self._bury(worker)
                if self.should_exit.is_set():
                    return
            if worker.retry_at is not None and time.monotonic() >= worker.retry_at:
                self.processes[idx] = self._spawn(worker.streak)

    def _bury(self, worker: WorkerProcess) -> None:
        worker.kill()  # dead already, or hung: it did not answer the ping
        worker.join()
        if worker.pid is not None:
            mark_process_dead(worker.pid)
        if worker.exitcode == STARTUP_FAILURE:
            logger.error("worker %s could not start; stopping every worker", worker.pid)
            self.startup_failed = True
            self.should_exit.set()
            return
        young = time.monotonic() - worker.started_at < _STABLE_S
        worker.streak = worker.streak + 1 if young else 0
        delay = 0.0 if worker.streak <= 1 else min(_MAX_BACKOFF_S, 2.0 ** (worker.streak - 2))
        worker.retry_at = time.monotonic() + delay
        logger.warning(
            "worker %s exited (%s); starting another in %.0f s", worker.pid, worker.exitcode, delay
        )

    def terminate_all(self) -> None:
        """Drop the supervisor's copy of the socket, then SIGTERM (drain) every worker."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def restart_all(self) -> None:
        """SIGHUP: replace the workers one by one, each retired once its successor is ready."""
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn()
            if not new.wait_until_ready(_READY_TIMEOUT_S, self.should_exit):
                new.kill()
                new.join()
                if new.pid is not None:
                    mark_process_dead(new.pid)
                logger.error("worker %s did not get ready; keeping the running ones", new.pid)
                return
            old.terminate()
            old.join()
            self.processes[idx] = new


__all__ = ["ServerFactory", "Supervisor", "WorkerProcess"]
