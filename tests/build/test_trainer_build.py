"""A real trainer image: built with podman, it trains offline as uid 10001 and checks its file."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.build import PipelineFile
from modelfleet.build.context import LOCAL_BASE
from modelfleet.build.engines import CliEngine, ImageEngine
from modelfleet.build.trainer import build_trainer
from modelfleet.config import Settings
from modelfleet.jobs import JobQueue, JobState, render_job
from modelfleet.kube import to_api_dict
from tests.models import training_pipeline_source

pytestmark = [pytest.mark.podman, pytest.mark.slow]
# The training stack (scikit-learn with SciPy, pandas, ONNX and ONNX Runtime, botocore,
# SQLAlchemy, psycopg) comes to ~360 MB over the base, and its compiled bytecode to ~95 MB
# more. torch slipping into an image whose pipeline does not import it would add far more
# than the headroom.
BUDGET_BYTES = 480 * 1000 * 1000

TINY = training_pipeline_source("tiny")
# How the pod runs (read-only root, a writable /tmp, no capabilities), with no network.
HARDENED = [
    "--rm",
    "--network",
    "none",
    "--read-only",
    "--tmpfs",
    "/tmp:rw,size=256m,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


@pytest.fixture(scope="session")
def podman() -> ImageEngine:
    binary = shutil.which("podman")
    if binary is None:
        raise RuntimeError("podman is not installed; run 'make test' (it installs podman)")
    engine = CliEngine("podman", binary)
    exists = subprocess.run([binary, "image", "exists", LOCAL_BASE], check=False)
    if exists.returncode != 0:
        from modelfleet.build.baseimage import make_base_image

        make_base_image(engine, tag=LOCAL_BASE)
    return engine


@pytest.fixture(scope="module")
def trainer(
    podman: ImageEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """One build for the module: a rebuild reuses podman's layers (about a minute cold)."""
    root = tmp_path_factory.mktemp("trainer")
    path = root / "laptop" / "tiny.py"
    path.parent.mkdir()
    path.write_bytes(TINY)
    result = build_trainer(
        path, out=root / "ctx", cache=root / "cache", engine=podman, base=LOCAL_BASE
    )
    assert result.image is not None
    assert result.tag == PipelineFile.read(path).tag()
    yield path, result.tag
    subprocess.run(["podman", "rmi", "-f", result.tag], capture_output=True, check=False)


def _podman(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _inspect(tag: str) -> dict:
    return json.loads(_podman("image", "inspect", tag).stdout)[0]


def test_the_image_carries_its_pipeline_labelled_lean_and_nonroot(
    trainer: tuple[Path, str],
) -> None:
    path, tag = trainer
    file = PipelineFile.read(path)
    info = _inspect(tag)
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["io.modelfleet.pipeline.sha256"] == file.sha256
    assert config["Labels"]["io.modelfleet.torch"] == "false"
    assert "MODELFLEET_PIPELINE=/opt/modelfleet/pipeline/tiny.py" in config["Env"]
    base = _inspect(LOCAL_BASE)["Size"]
    added = info["Size"] - base
    print(
        f"base {base / 1e6:.1f} MB, added {added / 1e6:.1f} MB, total {info['Size'] / 1e6:.1f} MB"
    )
    assert added <= BUDGET_BYTES
    probe = (
        "import importlib.util as u; print(u.find_spec('torch') is None, u.find_spec('sklearn'))"
    )
    found = _podman("run", *HARDENED, "--entrypoint", "python", tag, "-c", probe)
    assert found.stdout.startswith("True ModuleSpec(name='sklearn'"), found.stderr


def test_the_image_trains_offline_on_a_readonly_root(trainer: tuple[Path, str]) -> None:
    _, tag = trainer
    run = _podman("run", *HARDENED, tag)  # its CMD: modelfleet pipeline run <the file>
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "registered tiny:1" in run.stdout


def test_the_rendered_job_runs_in_the_image_and_refuses_other_code(
    trainer: tuple[Path, str], tmp_path: Path
) -> None:
    path, tag = trainer
    # The queue the pod reports to: SQLite on a folder the image's uid 10001 may write.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    queue = JobQueue(f"sqlite:///{shared}/registry.db")
    edited = tmp_path / "edited" / "tiny.py"
    edited.parent.mkdir()
    edited.write_bytes(TINY.replace(b"size=(60, 2)", b"size=(90, 2)"))
    jobs = [queue.submit(str(p), {}, backend="kubernetes") for p in (path, edited)]
    for file in shared.iterdir():
        file.chmod(0o666)
    cluster = Settings(
        home=tmp_path / "home", db_url="postgresql://mf@db/registry", artifacts="s3://m/p"
    )
    for job, submitted in zip(jobs, (path, edited), strict=True):
        file = PipelineFile.read(submitted)
        manifest = render_job(
            job, cluster, image=tag, pipeline=file.in_image, pipeline_sha256=file.sha256
        )
        (container,) = to_api_dict(manifest)["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        pod = _podman(
            "run",
            *HARDENED,
            "--volume",
            f"{shared}:/data",
            "--env",
            "MODELFLEET_DB_URL=sqlite:////data/registry.db",
            "--env",
            "MODELFLEET_ARTIFACTS=/data/artifacts",
            "--entrypoint",
            command[0],  # as Kubernetes runs `command`: it replaces ENTRYPOINT and CMD
            tag,
            *command[1:],
        )
        print(pod.stdout[-1500:], pod.stderr[-1500:])
    ran, refused = (queue.get(job.id) for job in jobs)
    queue.close()
    assert ran.state is JobState.SUCCEEDED, ran.error
    assert ran.result is not None
    assert ran.result["version"] == "tiny:1"
    assert refused.state is JobState.FAILED
    assert refused.error is not None
    assert refused.error.startswith("the trainer image carries a different tiny.py (sha256 ")
    assert refused.error.endswith("rebuild it: modelfleet build --trainer tiny.py")
