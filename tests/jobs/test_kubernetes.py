"""The Kubernetes backend's Job manifest: valid for 1.25-1.37 (strict), GPU-aware, honest."""

from __future__ import annotations

import kubernetes_validate
import pytest

from modelfleet.config import Settings
from modelfleet.deploy.manifests import to_dict
from modelfleet.errors import DeployError, JobError
from modelfleet.jobs import JobQueue
from modelfleet.jobs.kubernetes import render_job


@pytest.fixture
def shared(tmp_path: object) -> Settings:
    return Settings(
        home=f"{tmp_path}/home",
        db_url="postgresql://mf:secret@db:5432/registry",
        artifacts="s3://models/modelfleet",
    )


def _job(tmp_path: object, **kwargs: object) -> object:
    queue = JobQueue(f"sqlite:///{tmp_path}/q.db")
    job = queue.submit("/pipelines/churn.py", {"seed": 1}, **kwargs)  # type: ignore[arg-type]
    queue.close()
    return job


@pytest.mark.parametrize("version", [f"1.{m}" for m in range(25, 38)])
def test_job_manifest_is_valid_strict(version: str, shared: Settings, tmp_path: object) -> None:
    job = _job(tmp_path, gpus=1, cpus=2, memory="4Gi", max_attempts=3)
    data = to_dict(render_job(job, shared, image="registry.local/trainer:1"))  # type: ignore[arg-type]
    kubernetes_validate.validate(data, version, strict=True)


def test_job_manifest_fields(shared: Settings, tmp_path: object) -> None:
    job = _job(tmp_path, gpus=2, cpus=4, memory="8Gi", max_attempts=4)
    data = to_dict(render_job(job, shared, image="trainer:1"))  # type: ignore[arg-type]
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
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODELFLEET_DB_URL"] == "postgresql://mf:secret@db:5432/registry"
    assert env["MODELFLEET_ARTIFACTS"] == "s3://models/modelfleet"
    cpu_only = to_dict(render_job(_job(tmp_path), shared, image="trainer:1"))  # type: ignore[arg-type]
    assert "tolerations" not in cpu_only["spec"]["template"]["spec"]


def test_a_local_registry_cannot_back_a_cluster_job(tmp_path: object) -> None:
    local = Settings(home=f"{tmp_path}/home")
    with pytest.raises(JobError, match="need a registry the pods can reach"):
        render_job(_job(tmp_path), local, image="trainer:1")  # type: ignore[arg-type]


def test_bad_memory_is_explained(shared: Settings, tmp_path: object) -> None:
    with pytest.raises(DeployError, match="invalid memory request"):
        render_job(_job(tmp_path, memory="lots"), shared, image="t")  # type: ignore[arg-type]
