"""The Kubernetes backend's Job manifest: valid for 1.25-1.37 (strict), GPU-aware, honest."""

from __future__ import annotations

import json
import subprocess
import sys

import kubernetes_validate
import pytest

from modelfleet.config import Settings
from modelfleet.errors import DeployError, JobError, MissingDependencyError
from modelfleet.jobs import JobQueue, registry_secret, render_job
from modelfleet.jobs.queue import JobState
from modelfleet.kube import to_api_dict


@pytest.fixture
def shared(tmp_path: object) -> Settings:
    return Settings(
        home=f"{tmp_path}/home",
        db_url="postgresql://mf:secret@db:5432/registry",
        artifacts="s3://models/modelfleet",
    )


def _job(tmp_path: object, **kwargs: object) -> object:
    queue = JobQueue(f"sqlite:///{tmp_path}/q.db")
    job = queue.submit("/pipelines/churn.py", {"seed": 1}, **kwargs)
    queue.close()
    return job


@pytest.mark.parametrize("version", [f"1.{m}" for m in range(25, 38)])
def test_job_manifest_is_valid_strict(version: str, shared: Settings, tmp_path: object) -> None:
    job = _job(tmp_path, gpus=1, cpus=2, memory="4Gi", max_attempts=3)
    data = to_api_dict(render_job(job, shared, image="registry.local/trainer:1"))
    kubernetes_validate.validate(data, version, strict=True)


def test_job_manifest_fields(shared: Settings, tmp_path: object) -> None:
    job = _job(tmp_path, gpus=2, cpus=4, memory="8Gi", max_attempts=4)
    data = to_api_dict(render_job(job, shared, image="trainer:1"))
    assert data["apiVersion"] == "batch/v1"
    spec = data["spec"]
    assert spec["backoffLimit"] == 3
    assert spec["ttlSecondsAfterFinished"] == 3600
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][-3:] == ["--job", "1", "--record"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"] == {
        "cpu": "4",
        "memory": "8Gi",
        "nvidia.com/gpu": "2",
    }
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["restartPolicy"] == "Never"
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELFLEET_ARTIFACTS"]["value"] == "s3://models/modelfleet"
    # The registry's password is not in the Job: the pod reads it from the registry's Secret.
    secret = registry_secret(shared)
    assert "secret@db" not in json.dumps(data)
    assert env["MODELFLEET_DB_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "MODELFLEET_DB_URL"}
    }
    assert secret["stringData"]["MODELFLEET_DB_URL"] == "postgresql://mf:secret@db:5432/registry"
    assert secret["metadata"]["namespace"] == data["metadata"]["namespace"]
    kubernetes_validate.validate(secret, "1.33", strict=True)
    other = registry_secret(Settings(home=f"{tmp_path}/h2", db_url="postgresql://x@other/db"))
    assert other["metadata"]["name"] != secret["metadata"]["name"]  # one per registry
    cpu_only = to_api_dict(render_job(_job(tmp_path), shared, image="trainer:1"))
    assert "tolerations" not in cpu_only["spec"]["template"]["spec"]


def test_a_local_registry_cannot_back_a_cluster_job(tmp_path: object) -> None:
    local = Settings(home=f"{tmp_path}/home")
    with pytest.raises(JobError, match="need a registry the pods can reach"):
        render_job(_job(tmp_path), local, image="trainer:1")


def test_bad_memory_is_explained(shared: Settings, tmp_path: object) -> None:
    with pytest.raises(DeployError, match="invalid memory request"):
        render_job(_job(tmp_path, memory="lots"), shared, image="t")


def test_without_the_k8s_extra_the_error_names_it(
    shared: Settings, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError) as caught:
        render_job(_job(tmp_path), shared, image="trainer:1")
    assert str(caught.value) == (
        "kubernetes is not installed (needed to run Kubernetes Jobs); "
        "run: pip install 'modelfleet[k8s]'"
    )


def test_the_kubernetes_backend_does_not_need_the_deploy_package() -> None:
    script = (
        "import sys, modelfleet.jobs.kubernetes; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('modelfleet.')}))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.replace("'", '"')))
    assert "kube" in loaded
    assert not loaded & {"deploy", "cli", "serving", "build", "monitor"}


def test_a_cluster_job_waits_with_its_own_reason_and_keeps_a_recorded_outcome(
    tmp_path: object,
) -> None:
    """What the queue says about Kubernetes-backed jobs (the e2e test drives a real cluster)."""
    queue = JobQueue(f"sqlite:///{tmp_path}/q.db")
    written = queue.submit("/p.py", backend="kubernetes")
    assert "not sent to a cluster" in queue.waiting_reason(written)
    sent = queue.submit("/p.py", backend="kubernetes")
    queue.set_external(sent.id, "modelfleet-job-2")
    assert "handed to Kubernetes as Job modelfleet-job-2" in queue.waiting_reason(
        queue.get(sent.id)
    )
    # The pod recorded success; a later failure seen in the cluster must not overwrite it.
    taken = queue.take(sent.id, "pod/a")
    assert queue.finish(sent.id, "pod/a", taken.attempts, JobState.SUCCEEDED, result={"ok": 1})
    assert not queue.end_external(sent.id, JobState.FAILED, "Job gone", log="late output")
    assert queue.get(sent.id).state is JobState.SUCCEEDED
    assert queue.logs(sent.id) == []
    # A pod that never reported: the cluster's verdict and the pod's output are kept.
    assert queue.end_external(written.id, JobState.FAILED, "BackoffLimitExceeded", log="boom\n")
    failed = queue.get(written.id)
    assert (failed.state, failed.error) == (JobState.FAILED, "BackoffLimitExceeded")
    assert [text for _, _, text in queue.logs(written.id)] == ["boom\n"]
    queue.close()


def test_the_pod_runs_the_trainer_image_copy_it_checks_hardened(
    shared: Settings, tmp_path: object
) -> None:
    digest = "ab" * 32
    manifest = render_job(
        _job(tmp_path),
        shared,
        image="localhost/modelfleet/trainer-churn:abababababab",
        pipeline="/opt/modelfleet/pipeline/churn.py",
        pipeline_sha256=digest,
    )
    data = to_api_dict(manifest)
    kubernetes_validate.validate(data, "1.33", strict=True)
    pod = data["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "localhost/modelfleet/trainer-churn:abababababab"
    assert container["command"] == [
        "python",
        "-m",
        "modelfleet.jobs.runner",
        "--job",
        "1",
        "--record",
        "--pipeline",
        "/opt/modelfleet/pipeline/churn.py",
        "--pipeline-sha256",
        digest,
    ]
    assert "args" not in container  # the image's CMD (a local run) is not appended
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        10001,
        10001,
    )
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hardening = container["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"] == {"drop": ["ALL"]}
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["MODELFLEET_HOME"].startswith("/tmp/")
