"""The Kubernetes backend: a queued job becomes a ``batch/v1`` Job, tracked with the client.

The pod runs ``python -m modelfleet.jobs.runner --job ID --record`` against the shared
registry (PostgreSQL and an object store: a SQLite file on one machine cannot be shared)
and records the outcome in the queue itself; GPU jobs request ``nvidia.com/gpu`` and
tolerate and select GPU nodes. The submitted file is not on the cluster: a trainer image
(``modelfleet build --trainer``) carries it, and the pod is told where and which sha256 to
expect (``--pipeline``, ``--pipeline-sha256``), so it refuses an image built from other code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from modelfleet.config import Settings
from modelfleet.errors import JobError
from modelfleet.jobs.queue import FINISHED, Job, JobQueue, JobState
from modelfleet.kube import (
    Cluster,
    apply_objects,
    check_quantity,
    container_waits,
    k8s_name,
    require_kubernetes,
    scheduling_wait,
)

NAMESPACE = "modelfleet-jobs"


def _client() -> Any:
    return require_kubernetes("run Kubernetes Jobs").client


def job_name(job: Job) -> str:
    """``modelfleet-job-<id>``."""
    return k8s_name(f"modelfleet-job-{job.id}")


def _runner_command(
    job: Job, *, pipeline: str | None = None, pipeline_sha256: str | None = None
) -> list[str]:
    """The pod's argv: run and record ``job``, from the image's copy of the pipeline if given."""
    command = ["python", "-m", "modelfleet.jobs.runner", "--job", str(job.id), "--record"]
    if pipeline is not None:
        command += ["--pipeline", pipeline]
    if pipeline_sha256 is not None:
        command += ["--pipeline-sha256", pipeline_sha256]
    return command


def render_job(
    job: Job,
    settings: Settings,
    *,
    image: str,
    namespace: str = NAMESPACE,
    pipeline: str | None = None,
    pipeline_sha256: str | None = None,
) -> Any:
    """The ``batch/v1`` Job for a queued job.

    ``pipeline`` is the file's path inside ``image`` and ``pipeline_sha256`` the digest of
    the file that was submitted; without them the pod runs the job's own path.
    """
    if settings.db_url.startswith("sqlite"):
        raise JobError(
            "Kubernetes jobs need a registry the pods can reach",
            hint="set MODELFLEET_DB_URL to PostgreSQL and MODELFLEET_ARTIFACTS to s3://…",
        )
    k = _client()
    cpus = f"{job.cpus:g}"
    check_quantity(cpus, "CPU request")
    check_quantity(job.memory, "memory request")
    requests = {"cpu": cpus, "memory": job.memory}
    limits = {"memory": job.memory}
    if job.gpus:
        requests["nvidia.com/gpu"] = str(job.gpus)
        limits["nvidia.com/gpu"] = str(job.gpus)
    secret = registry_secret(settings, namespace)["metadata"]["name"]
    env = [
        k.V1EnvVar(name="MODELFLEET_ARTIFACTS", value=settings.artifacts),
        k.V1EnvVar(name="MODELFLEET_HOME", value="/tmp/modelfleet"),  # noqa: S108
        k.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]
    # The registry's URL holds its password, and the store's options may hold keys: the pod
    # reads them from the registry's Secret, so the Job itself carries no credential.
    for key in _secret_data(settings):
        source = k.V1EnvVarSource(secret_key_ref=k.V1SecretKeySelector(name=secret, key=key))
        env.append(k.V1EnvVar(name=key, value_from=source))
    pod = k.V1PodSpec(
        restart_policy="Never",
        automount_service_account_token=False,
        security_context=k.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[
            k.V1Container(
                name="job",
                image=image,
                command=_runner_command(job, pipeline=pipeline, pipeline_sha256=pipeline_sha256),
                env=env,
                resources=k.V1ResourceRequirements(requests=requests, limits=limits),
                security_context=k.V1SecurityContext(
                    allow_privilege_escalation=False,
                    read_only_root_filesystem=True,
                    capabilities=k.V1Capabilities(drop=["ALL"]),
                ),
                volume_mounts=[k.V1VolumeMount(name="tmp", mount_path="/tmp")],  # noqa: S108
            )
        ],
        volumes=[k.V1Volume(name="tmp", empty_dir=k.V1EmptyDirVolumeSource())],
    )
    if job.gpus:
        pod.node_selector = {"nvidia.com/gpu.present": "true"}
        pod.tolerations = [
            k.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ]
    labels = {"app.kubernetes.io/part-of": "modelfleet", "modelfleet.io/job": str(job.id)}
    return k.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k.V1ObjectMeta(name=job_name(job), namespace=namespace, labels=labels),
        spec=k.V1JobSpec(
            backoff_limit=max(0, job.max_attempts - 1),
            ttl_seconds_after_finished=3600,
            active_deadline_seconds=24 * 3600,
            template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=pod),
        ),
    )


def _secret_data(settings: Settings) -> dict[str, str]:
    data = {"MODELFLEET_DB_URL": settings.db_url}
    if settings.artifacts_options:  # an S3 endpoint, keys: the pod needs them too
        data["MODELFLEET_ARTIFACTS_OPTIONS"] = json.dumps(
            settings.artifacts_options, sort_keys=True
        )
    return data


def registry_secret(settings: Settings, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The Secret a Job's pod reads the registry's credentials from (named per registry).

    Its name carries a digest of the registry URL, so queues of two registries that share a
    namespace never overwrite each other's.
    """
    digest = hashlib.sha256(settings.db_url.encode()).hexdigest()[:10]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"modelfleet-registry-{digest}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "modelfleet"},
        },
        "type": "Opaque",
        "stringData": _secret_data(settings),
    }


def submit_job(cluster: Cluster, manifest: Any, settings: Settings) -> str:
    """Create the Job (its namespace and registry Secret applied first); returns its name."""
    k = _client()
    namespace = manifest.metadata.namespace
    labels = {"app.kubernetes.io/part-of": "modelfleet"}
    apply_objects(
        cluster,
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels},
            },
            registry_secret(settings, namespace),
        ],
    )
    try:
        k.BatchV1Api(cluster.api).create_namespaced_job(namespace, manifest)
    except k.ApiException as exc:
        raise JobError(f"creating Job {manifest.metadata.name} failed: {exc.reason}") from exc
    return str(manifest.metadata.name)


@dataclass(frozen=True)
class ClusterJob:
    """What the cluster says about a Job: the queue state it means, why, and the pod's output."""

    state: JobState
    detail: str
    log: str = ""


def observe_job(api: Any, name: str, namespace: str = NAMESPACE) -> ClusterJob:
    """Read a Job and its pods through the official client."""
    k = _client()
    try:
        job = k.BatchV1Api(api).read_namespaced_job_status(name, namespace)
    except k.ApiException as exc:
        if exc.status == 404:
            return ClusterJob(
                JobState.FAILED,
                f"Kubernetes Job {namespace}/{name} is gone (deleted, or expired after its TTL) "
                "and its pod never recorded an outcome",
            )
        raise JobError(f"reading Job {namespace}/{name} failed: {exc.reason}") from exc
    current = job.status
    core = k.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    pods.sort(key=lambda pod: pod.metadata.creation_timestamp)
    if current.succeeded:
        return ClusterJob(JobState.SUCCEEDED, "its pod completed", _log(core, pods, namespace))
    failed = next(
        (c for c in current.conditions or [] if c.type == "Failed" and c.status == "True"), None
    )
    if failed is not None:
        return ClusterJob(
            JobState.FAILED, _failure(name, failed, pods), _log(core, pods, namespace)
        )
    waiting = _waiting(pods)
    if waiting:
        return ClusterJob(JobState.QUEUED, waiting)
    if current.active:
        return ClusterJob(JobState.RUNNING, f"{current.active} pod(s) running")
    return ClusterJob(JobState.QUEUED, "waiting for the cluster to start a pod")


def _failure(name: str, condition: Any, pods: list[Any]) -> str:
    why = f"Kubernetes Job {name} failed: {condition.reason}"
    if condition.message:
        why += f" ({condition.message})"
    exits = [
        s.state.terminated
        for pod in pods
        for s in (pod.status.container_statuses or [])
        if s.state and s.state.terminated
    ]
    if exits:
        last = exits[-1]
        why += f"; last pod exited with code {last.exit_code}"
        if last.message:  # e.g. the runtime could not start the command
            why += f" ({last.reason}: {last.message.strip()})"
    return why


def _waiting(pods: list[Any]) -> str:
    """Why the newest pod has not started ("" when nothing holds it)."""
    for pod in reversed(pods):
        waits = container_waits(pod)
        if waits:
            wait = waits[0]
            detail = f"pod {wait.pod} waiting: {wait.reason}"
            if wait.message:
                detail += f" ({wait.message})"
            if wait.stuck:
                detail += "; it will not start until this is fixed"
            return detail
        unplaced = scheduling_wait(pod)
        if unplaced is not None:
            return f"pod {unplaced.pod} unschedulable: {unplaced.message}"
    return ""


def _log(core: Any, pods: list[Any], namespace: str, lines: int = 200) -> str:
    """The newest pod's last lines of output ("" when the kubelet no longer has them)."""
    k = _client()
    if not pods:
        return ""
    try:
        text = core.read_namespaced_pod_log(
            pods[-1].metadata.name, namespace, tail_lines=lines, container="job"
        )
    except k.ApiException:
        return ""
    return str(text or "")


def sync_job(queue: JobQueue, api: Any, job: Job) -> tuple[Job, str]:
    """Bring a Kubernetes-backed job's queue entry up to date with its Job in the cluster.

    The pod records success or failure itself; what it cannot record (it never started, it
    crashed before reaching the queue, it was killed, its Job was deleted) is recorded here,
    with the pod's last output kept as the job's log. Returns the job and what the cluster
    says about it.
    """
    if job.backend != "kubernetes" or job.external_id is None or job.state in FINISHED:
        return job, ""
    seen = observe_job(api, job.external_id)
    if seen.state is JobState.FAILED:
        queue.end_external(job.id, JobState.FAILED, seen.detail, log=seen.log)
    elif seen.state is JobState.SUCCEEDED:
        # The pod exited 0 but the queue has no outcome: the runner could not record it.
        queue.end_external(
            job.id,
            JobState.FAILED,
            "the pod completed but never recorded an outcome in the queue; see 'jobs logs'",
            log=seen.log,
        )
    return queue.get(job.id), seen.detail


def delete_job(api: Any, name: str, namespace: str = NAMESPACE) -> None:
    """Delete a Job and its pods (a cancel); a Job already gone is fine."""
    k = _client()
    try:
        k.BatchV1Api(api).delete_namespaced_job(name, namespace, propagation_policy="Background")
    except k.ApiException as exc:
        if exc.status != 404:
            raise JobError(f"deleting Job {namespace}/{name} failed: {exc.reason}") from exc
