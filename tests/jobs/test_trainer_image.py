"""A Kubernetes job runs the trainer image's copy of its pipeline, and only the one submitted."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelfleet.build import PipelineFile
from modelfleet.config import Settings
from modelfleet.jobs import Job, JobQueue, JobState, render_job
from modelfleet.kube import to_api_dict
from tests.models import training_pipeline_source

CHURN = training_pipeline_source("churn")
# What the cluster side of a manifest needs; the pod in these tests reaches SQLite instead.
CLUSTER = {"db_url": "postgresql://mf@db:5432/registry", "artifacts": "s3://models/modelfleet"}


def _submitted(tmp_path: Path, source: bytes = CHURN) -> Path:
    laptop = tmp_path / "laptop"
    laptop.mkdir(exist_ok=True)
    path = laptop / "churn.py"
    path.write_bytes(source)
    return path


def _image(tmp_path: Path, source: bytes | None) -> Path:
    """A folder standing for the image's root, holding its copy of the pipeline (or none)."""
    root = tmp_path / "image"
    copy = root / "opt" / "modelfleet" / "pipeline" / "churn.py"
    copy.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        copy.write_bytes(source)
    return root


def _run_pod(settings: Settings, submitted: Path, image_root: Path) -> tuple[Job, str, int]:
    """Queue ``submitted``, render its Job and run the pod's command here; the job, output, rc."""
    queue = JobQueue(settings.db_url)
    job = queue.submit(str(submitted), {}, backend="kubernetes")
    file = PipelineFile.read(submitted)
    manifest = render_job(
        job,
        Settings(home=settings.home, **CLUSTER),  # type: ignore[arg-type]
        image=file.tag(),
        pipeline=file.in_image,
        pipeline_sha256=file.sha256,
    )
    command = to_api_dict(manifest)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "modelfleet.jobs.runner"]
    where = command.index("--pipeline") + 1
    assert command[where] == "/opt/modelfleet/pipeline/churn.py"
    command[where] = str(image_root) + command[where]  # the image's file system, here
    env = {**os.environ, "MODELFLEET_HOME": str(settings.home)}
    done = subprocess.run(
        [sys.executable, *command[1:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    ended = queue.get(job.id)
    queue.close()
    return ended, done.stdout + done.stderr, done.returncode


def test_an_image_built_from_other_code_is_refused_with_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    edited = CHURN.replace(b"size=(60, 2)", b"size=(80, 2)")
    submitted = _submitted(tmp_path, edited)
    job, output, code = _run_pod(settings, submitted, _image(tmp_path, CHURN))
    carried = hashlib.sha256(CHURN).hexdigest()[:12]
    expected = hashlib.sha256(edited).hexdigest()[:12]
    message = (
        f"the trainer image carries a different churn.py (sha256 {carried}, submitted "
        f"{expected}); rebuild it: modelfleet build --trainer churn.py"
    )
    assert (job.state, job.error, code) == (JobState.FAILED, message, 1)
    assert job.result == {"error": message}
    assert message in output
    assert "Traceback" not in output


def test_the_image_copy_runs_when_it_is_the_submitted_file(
    settings: Settings, tmp_path: Path
) -> None:
    submitted = _submitted(tmp_path)
    job, output, code = _run_pod(settings, submitted, _image(tmp_path, CHURN))
    assert (job.state, job.error, code) == (JobState.SUCCEEDED, None, 0), output
    assert job.result is not None
    assert job.result["version"] == "churn:1"


def test_an_image_without_the_pipeline_is_refused(settings: Settings, tmp_path: Path) -> None:
    submitted = _submitted(tmp_path)
    job, output, code = _run_pod(settings, submitted, _image(tmp_path, None))
    assert (job.state, code) == (JobState.FAILED, 1)
    assert job.error is not None
    assert job.error.startswith("the image has no pipeline file at ")
    assert job.error.endswith("; build a trainer image: modelfleet build --trainer churn.py")
    assert "Traceback" not in output


@pytest.mark.postgres
def test_submit_names_the_trainer_image_of_the_file_and_its_digest(
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelfleet.cli import main

    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_DB_URL", postgres_url)
    monkeypatch.setenv("MODELFLEET_ARTIFACTS", "s3://models/modelfleet")
    submitted = _submitted(tmp_path)
    file = PipelineFile.read(submitted)
    out = tmp_path / "k8s"
    argv = ["jobs", "submit", str(submitted), "--backend", "kubernetes", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert main([*argv, "--image", "registry.local/ml/trainer:7"]) == 0
    images = []
    for name in ("modelfleet-job-1.yaml", "modelfleet-job-2.yaml"):
        (container,) = yaml.safe_load((out / name).read_text())["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["command"][-4:] == [
            "--pipeline",
            "/opt/modelfleet/pipeline/churn.py",
            "--pipeline-sha256",
            file.sha256,
        ]
        images.append(container["image"])
    # The tag 'modelfleet build --trainer churn.py' gives the same file, unless one is named.
    assert images == [file.tag(), "registry.local/ml/trainer:7"]
    # The registry's credentials go to a Secret file only its owner can read.
    (secret,) = out.glob("modelfleet-registry-*.yaml")
    assert secret.stat().st_mode & 0o077 == 0
    assert yaml.safe_load(secret.read_text())["stringData"]["MODELFLEET_DB_URL"] == postgres_url
