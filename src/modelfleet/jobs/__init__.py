"""Training jobs: a queue in the registry database, local workers, Kubernetes Jobs."""

from __future__ import annotations

from modelfleet.errors import JobError
from modelfleet.jobs.queue import Job, JobQueue, JobState
from modelfleet.jobs.worker import Worker

__all__ = ["Job", "JobError", "JobQueue", "JobState", "Worker"]
