"""Following a retraining job through: job → gate → promotion to the release stage.

:class:`RetrainTrigger` decides *that* a model needs retraining; a :class:`RetrainChain`
submits the job where it should run (the local queue, or a Kubernetes Job on the pipeline's
trainer image, ``modelfleet build --trainer``) and follows it. When the job succeeds and the
version it registered passed the pipeline's gate, the chain promotes that version to
``release_to`` (for example prod) and reports it, so the caller can release it as a canary
(``modelfleet monitor watch --release prod`` runs ``modelfleet release``). A job that fails,
is cancelled or registers a version that fails its gate ends the chain with a reason;
nothing is promoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.config import Settings
from modelfleet.errors import ModelfleetError
from modelfleet.refs import Stage

BACKENDS = ("local", "kubernetes")


@dataclass(frozen=True)
class ChainEvent:
    """What happened to one followed job since the last poll."""

    job_id: int
    model: str
    kind: str  # "promoted", "not-promoted" or "failed"
    message: str
    ref: str | None = None  # the version the job registered
    stage: Stage | None = None  # where it was promoted


class RetrainChain:
    """Submits retraining jobs and follows them until their version is promoted (or not)."""

    def __init__(
        self,
        settings: Settings,
        *,
        backend: str = "local",
        image: str | None = None,
        kubeconfig: Path | None = None,
        release_to: Stage | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ModelfleetError(
                f"unknown job backend {backend!r}", hint="use local or kubernetes"
            )
        self.settings = settings
        self.backend = backend
        self.image = image
        self.kubeconfig = kubeconfig
        self.release_to = release_to
        self.following: dict[int, str] = {}  # job id -> model name
        self._cluster: Any = None

    def _queue(self) -> Any:
        from modelfleet.jobs import JobQueue

        return JobQueue(self.settings.db_url)

    def submit(self, model: str, pipeline: str, params: dict[str, Any], reason: str) -> int:
        """Queue ``pipeline`` (as a Kubernetes Job on that backend); returns the job id."""
        queue = self._queue()
        try:
            if self.backend == "local":
                job = queue.submit(pipeline, params, user="modelfleet-monitor")
            else:
                job = self._submit_kubernetes(queue, pipeline, params)
        finally:
            queue.close()
        self.following[job.id] = model
        return int(job.id)

    def _submit_kubernetes(self, queue: Any, pipeline: str, params: dict[str, Any]) -> Any:
        from modelfleet.build import PipelineFile
        from modelfleet.jobs import JobState, render_job, submit_job

        submitted = PipelineFile.read(Path(pipeline))
        manifests: list[Any] = []

        def render(job: Any) -> None:  # before the row commits: a bad Job is never queued
            manifests.append(
                render_job(
                    job,
                    self.settings,
                    image=self.image or submitted.tag(),
                    pipeline=submitted.in_image,
                    pipeline_sha256=submitted.sha256,
                )
            )

        job = queue.submit(
            pipeline, params, backend="kubernetes", user="modelfleet-monitor", check=render
        )
        try:
            name = submit_job(self._connect(), manifests[0], self.settings)
        except ModelfleetError:
            queue.end_external(job.id, JobState.FAILED, "the cluster refused the Job")
            raise
        queue.set_external(job.id, name)
        return job

    def _connect(self) -> Any:
        if self._cluster is None:
            from modelfleet.kube import Cluster

            self._cluster = Cluster.connect(self.kubeconfig)
        return self._cluster

    def poll(self) -> list[ChainEvent]:
        """Check every followed job once; returns what finished since the last poll."""
        if not self.following:
            return []
        from modelfleet.jobs import FINISHED, sync_job

        events = []
        queue = self._queue()
        try:
            for job_id, model in list(self.following.items()):
                job = queue.get(job_id)
                if job.backend == "kubernetes" and job.state not in FINISHED:
                    job, _ = sync_job(queue, self._connect().api, job)
                if job.state not in FINISHED:
                    continue
                del self.following[job_id]
                events.append(self._finished(job, model))
        finally:
            queue.close()
        return events

    def _finished(self, job: Any, model: str) -> ChainEvent:
        state = str(getattr(job.state, "value", job.state))
        if state != "succeeded":
            why = job.error or state
            return ChainEvent(job.id, model, "failed", f"job {job.id} {state}: {why}")
        result = job.result or {}
        ref, gate = result.get("version"), result.get("gate") or {}
        if not ref:
            message = f"job {job.id} succeeded but registered no new version"
            reason = gate.get("reason")
            return ChainEvent(
                job.id, model, "not-promoted", message + (f" ({reason})" if reason else "")
            )
        if not gate.get("passed"):
            why = gate.get("reason") or "the pipeline's gate did not pass"
            return ChainEvent(job.id, model, "not-promoted", f"job {job.id}: {ref}: {why}", ref)
        if self.release_to is None:
            message = f"job {job.id}: {ref} passed its gate"
            return ChainEvent(
                job.id, model, "not-promoted", message + " (no release stage set)", ref
            )
        return self._promote(job.id, model, str(ref))

    def _promote(self, job_id: int, model: str, ref: str) -> ChainEvent:
        from modelfleet.registry import Registry

        stage = self.release_to
        assert stage is not None
        reason = f"retrained by job {job_id} (monitor); the pipeline's gate passed"
        try:
            with Registry.open(self.settings) as registry:
                registry.promote(ref, stage, reason=reason)
        except ModelfleetError as exc:
            return ChainEvent(job_id, model, "not-promoted", f"{ref}: not promoted: {exc}", ref)
        message = f"job {job_id}: {ref} passed its gate and now holds {model}@{stage.value}"
        return ChainEvent(job_id, model, "promoted", message, ref, stage)
