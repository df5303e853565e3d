"""Training jobs: a queue in the registry database, local workers, Kubernetes Jobs."""

from __future__ import annotations

from modelfleet.errors import JobError
from modelfleet.jobs.gpus import GpuPool, find_devices, gpu_shortage
from modelfleet.jobs.kubernetes import (
    delete_job,
    observe_job,
    registry_secret,
    render_job,
    submit_job,
    sync_job,
)
from modelfleet.jobs.queue import FINISHED, Job, JobQueue, JobState
from modelfleet.jobs.worker import Worker

__all__ = [
    "FINISHED",
    "GpuPool",
    "Job",
    "JobError",
    "JobQueue",
    "JobState",
    "Worker",
    "delete_job",
    "find_devices",
    "gpu_shortage",
    "observe_job",
    "registry_secret",
    "render_job",
    "submit_job",
    "sync_job",
]
