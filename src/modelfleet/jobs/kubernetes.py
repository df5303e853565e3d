"""The Kubernetes backend: a queued job becomes a ``batch/v1`` Job, tracked with the client.

The pod runs ``python -m modelfleet.jobs.runner --job ID --record`` against the shared
registry (PostgreSQL and an object store: a SQLite file on one machine cannot be shared)
and records the outcome in the queue itself; GPU jobs request ``nvidia.com/gpu`` and
tolerate and select GPU nodes.
"""

from __future__ import annotations

from typing import Any

from modelfleet.config import Settings
from modelfleet.deploy.spec import check_quantity, k8s_name
from modelfleet.errors import JobError, MissingDependencyError
from modelfleet.jobs.queue import Job, JobState


def _client() -> Any:
    try:
        from kubernetes import client
    except ImportError as exc:
        raise MissingDependencyError("kubernetes", "k8s", purpose="run Kubernetes Jobs") from exc
    return client


def job_name(job: Job) -> str:
    """``modelfleet-job-<id>``."""
    return k8s_name(f"modelfleet-job-{job.id}")


def render_job(
    job: Job, settings: Settings, *, image: str, namespace: str = "modelfleet-jobs"
) -> Any:
    """The ``batch/v1`` Job for a queued job."""
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
    env = [
        k.V1EnvVar(name="MODELFLEET_DB_URL", value=settings.db_url),
        k.V1EnvVar(name="MODELFLEET_ARTIFACTS", value=settings.artifacts),
        k.V1EnvVar(name="MODELFLEET_HOME", value="/tmp/modelfleet"),  # noqa: S108
        k.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]
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
                command=[
                    "python",
                    "-m",
                    "modelfleet.jobs.runner",
                    "--job",
                    str(job.id),
                    "--record",
                ],
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


def submit(api: Any, manifest: Any) -> str:
    """Create the Job in the cluster; returns its name."""
    k = _client()
    namespace = manifest.metadata.namespace
    batch = k.BatchV1Api(api)
    try:
        batch.create_namespaced_job(namespace, manifest)
    except k.ApiException as exc:
        raise JobError(f"creating Job {manifest.metadata.name} failed: {exc.reason}") from exc
    return str(manifest.metadata.name)


def status(api: Any, name: str, namespace: str = "modelfleet-jobs") -> JobState:
    """The queue state a Kubernetes Job's status means."""
    k = _client()
    current = k.BatchV1Api(api).read_namespaced_job_status(name, namespace).status
    if current.succeeded:
        return JobState.SUCCEEDED
    if any(c.type == "Failed" and c.status == "True" for c in current.conditions or []):
        return JobState.FAILED
    return JobState.RUNNING if current.active else JobState.QUEUED
