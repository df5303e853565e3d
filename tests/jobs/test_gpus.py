"""GPU accounting: which devices a worker finds, which job holds which, the order GPU jobs
start in (real SQLite and PostgreSQL), jobs too big for every worker, the CLI's word on it."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.errors import JobError
from modelfleet.jobs import GpuPool, JobQueue, JobState, find_devices, gpu_shortage

HOLD = Path(__file__).parent / "pipelines" / "gpu_hold.py"

SMI_TWO_GPUS = """#!/bin/sh
echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)"
echo "  MIG 1g.5gb      Device  0: (UUID: MIG-bbbb)"
echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-cccc)"
"""

SMI_NO_DRIVER = """#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
"""


def _path_with_smi(tmp_path: Path, script: str | None) -> dict[str, str]:
    """An environment whose PATH holds only a stand-in ``nvidia-smi`` (or nothing)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    if script is not None:
        smi = folder / "nvidia-smi"
        smi.write_text(script)
        smi.chmod(0o755)
    return {"PATH": str(folder)}


@pytest.mark.parametrize(
    ("listed", "devices"),
    [
        ("0,1", ("0", "1")),
        ("3, 1", ("3", "1")),
        ("GPU-aaaa,MIG-bbbb", ("GPU-aaaa", "MIG-bbbb")),
        ("", ()),
        ("-1", ()),
        ("2,-1,0", ("2",)),  # CUDA stops at the first id it cannot use
        ("1,1", ("1",)),
    ],
)
def test_the_devices_cuda_visible_devices_lists_are_offered_as_given(
    listed: str, devices: tuple[str, ...], tmp_path: Path
) -> None:
    env = {**_path_with_smi(tmp_path, SMI_TWO_GPUS), "CUDA_VISIBLE_DEVICES": listed}
    assert find_devices(None, env) == devices  # the list wins over nvidia-smi
    assert find_devices(len(devices), env) == devices
    assert find_devices(0, env) == ()


def test_an_explicit_count_takes_the_first_listed_devices_or_numbers_them(tmp_path: Path) -> None:
    assert find_devices(1, {"CUDA_VISIBLE_DEVICES": "5,2"}) == ("5",)
    assert find_devices(3, _path_with_smi(tmp_path, None)) == ("0", "1", "2")
    with pytest.raises(JobError) as caught:
        find_devices(3, {"CUDA_VISIBLE_DEVICES": "5,2"})
    assert str(caught.value) == (
        "the worker was told to offer 3 GPU(s) but CUDA_VISIBLE_DEVICES='5,2' names 2; "
        "give --gpus (MODELFLEET_GPUS) 2 or less, or list more devices in CUDA_VISIBLE_DEVICES"
    )
    with pytest.raises(JobError, match="cannot offer -1 GPUs"):
        find_devices(-1, {})


def test_nvidia_smi_counts_the_gpus_when_nothing_is_set(tmp_path: Path) -> None:
    assert find_devices(None, _path_with_smi(tmp_path, SMI_TWO_GPUS)) == ("0", "1")


@pytest.mark.parametrize("script", [None, SMI_NO_DRIVER], ids=["missing", "failing"])
def test_no_nvidia_smi_or_a_failing_one_means_no_gpus(tmp_path: Path, script: str | None) -> None:
    assert find_devices(None, _path_with_smi(tmp_path, script)) == ()


def test_this_machine_offers_no_gpus() -> None:
    if shutil.which("nvidia-smi") is not None:
        pytest.skip("this machine has nvidia-smi")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    assert find_devices(None, env) == ()


def test_a_pool_hands_out_free_devices_and_takes_them_back() -> None:
    pool = GpuPool(("7", "3", "5"))
    assert (pool.total, pool.free) == (3, 3)
    assert pool.take(1, 2) == ("7", "3")
    assert pool.take(2, 0) == ()
    assert pool.take(3, 1) == ("5",)
    assert pool.free == 0
    with pytest.raises(JobError, match="job 4 needs 1 GPU\\(s\\) but 0 of 3 are free"):
        pool.take(4, 1)
    pool.release(1)
    assert (pool.free, pool.held(1)) == (2, ())
    with pytest.raises(JobError, match="job 3 already holds GPU\\(s\\) 5"):
        pool.take(3, 1)
    assert pool.take(4, 2) == ("7", "3")
    pool.release(2)  # held none: nothing changes
    pool.release(99)
    assert pool.free == 0


@pytest.fixture
def queue(db_url: str) -> Iterator[JobQueue]:
    q = JobQueue(db_url)
    yield q
    q.close()


def test_gpu_jobs_start_in_line_and_jobs_without_gpus_pass_a_waiting_one(queue: JobQueue) -> None:
    huge = queue.submit("p.py", gpus=8, priority=9)  # more than this worker has: not its line
    big = queue.submit("p.py", gpus=2)
    small = queue.submit("p.py", gpus=1)
    plain = queue.submit("p.py")

    def claim(free: int) -> int | None:
        job = queue.claim("w", gpus=2, cpus=4, lease_s=60, free_gpus=free)
        return None if job is None else job.id

    # One of the two GPUs is busy: the 2-GPU job first in line keeps the free one, so the
    # 1-GPU job behind it waits too, and the job without GPUs goes ahead.
    assert claim(1) == plain.id
    assert claim(1) is None
    assert claim(2) == big.id
    assert claim(0) is None
    assert claim(1) == small.id
    assert queue.get(huge.id).state is JobState.QUEUED


def test_without_a_gpu_count_the_claim_sees_only_what_the_worker_has(queue: JobQueue) -> None:
    first = queue.submit("p.py", gpus=2)
    second = queue.submit("p.py", gpus=2)
    a = queue.claim("w", gpus=2, cpus=4, lease_s=60)
    b = queue.claim("w", gpus=2, cpus=4, lease_s=60)
    assert (a and a.id, b and b.id) == (first.id, second.id)


def test_jobs_no_live_worker_can_run_fail_at_once(queue: JobQueue) -> None:
    assert queue.offered_gpus() is None
    fits = queue.submit("p.py", gpus=2)
    for_the_big_one = queue.submit("p.py", gpus=4)
    too_big = queue.submit("p.py", gpus=5)
    cluster = queue.submit("p.py", gpus=8, backend="kubernetes")
    queue.register_worker("big", gpus=4, cpus=8)
    assert queue.offered_gpus() == 4
    failed = queue.fail_oversized(gpus=2)
    assert [job.id for job in failed] == [too_big.id]
    ended = queue.get(too_big.id)
    assert (ended.state, ended.attempts, ended.error) == (
        JobState.FAILED,
        0,
        "the job asks for 5 GPU(s) but the biggest live worker offers 4, so it would wait "
        "forever; submit it with --backend kubernetes, or start a worker on a machine that has "
        "them with 'modelfleet worker --gpus 5'",
    )
    assert ended.finished_at is not None
    for job in (fits, for_the_big_one, cluster):
        assert queue.get(job.id).state is JobState.QUEUED
    assert queue.fail_oversized(gpus=2) == []
    assert str(gpu_shortage(5, 4)) == ended.error


def test_submit_warns_when_every_live_worker_is_too_small(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.home.mkdir(parents=True)
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    record = settings.home / "record.jsonl"
    submit = ["jobs", "submit", str(HOLD), "--param", f"record={record}"]
    assert main([*submit, "--gpus", "3"]) == 0  # no worker is live: nothing to say yet
    assert capsys.readouterr().err == ""
    queue = JobQueue(settings.db_url)
    queue.register_worker("two-gpus", gpus=2, cpus=4)
    assert main([*submit, "--gpus", "2"]) == 0
    assert capsys.readouterr().err == ""
    assert main([*submit, "--gpus", "3"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("job 3 queued (local, priority 0, 3 GPU)")
    assert out.err == (
        "warning: the job asks for 3 GPU(s) but the biggest live worker offers 2, so it would "
        "wait forever; submit it with --backend kubernetes, or start a worker on a machine that "
        "has them with 'modelfleet worker --gpus 3'\n"
    )
    queue.close()


def test_the_worker_command_refuses_more_gpus_than_cuda_visible_devices_lists(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.home.mkdir(parents=True)
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("MODELFLEET_GPUS", "2")
    before = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["worker", "--once"])
    finally:
        signal.signal(signal.SIGTERM, before)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: the worker was told to offer 2 GPU(s)")
    assert len(err.strip().splitlines()) == 1
