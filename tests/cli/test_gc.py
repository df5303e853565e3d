"""``modelfleet gc``: killed writes' leftovers listed, then removed; referenced files never."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelfleet as mf
from modelfleet.config import Settings, load_settings
from modelfleet.jobs import JobQueue, JobState
from modelfleet.pipeline import Pipeline, run_pipeline, step
from modelfleet.registry import Registry, collect_garbage
from tests.cli.runner import run
from tests.models import sum_graph

HOURS_AGO = time.time() - 2 * 3600


@step
def numbers(n: int = 5) -> list[int]:
    return list(range(n))


@step
def total(numbers: list[int]) -> int:
    return sum(numbers)


PIPELINE = Pipeline(name="sums", steps=[numbers, total])


@dataclass
class Store:
    """A registry home whose artifact folder holds referenced files and garbage."""

    root: Path
    orphan: str  # a blob a killed registration stored, never referenced
    temporary: str  # a killed write's .incoming- file
    young: set[str]  # unreferenced, but recent: maybe a registration in flight
    job_log: str


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def age(root: Path, key: str, when: float = HOURS_AGO) -> None:
    os.utime(root / key, (when, when))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFLEET_QUANTIZE__LATENCY_RUNS", "3")
    monkeypatch.setenv("COLUMNS", "400")
    settings = load_settings()
    root = Path(settings.artifacts)
    with Registry.open(settings) as reg:
        mf.register(sum_graph(), name="adder", sample_input=[[1.0, 2.0, 3.0]], registry=reg)
        run_pipeline(PIPELINE, settings=settings, registry=reg, say=lambda _: None)
        queue = JobQueue(settings.db_url)
        job = queue.submit("sums.py")
        assert queue.claim("w1", gpus=0, cpus=1, lease_s=60) is not None
        log = reg.artifacts.put_bytes(b"step 1 ok\n")
        queue.finish(job.id, "w1", 1, JobState.SUCCEEDED, log_key=log.key)
        queue.close()
        orphan = reg.artifacts.put_bytes(b"a graph whose version row was never written").key
        young = {reg.artifacts.put_bytes(b"a graph being registered right now").key}
    folder = orphan.rsplit("/", 1)[0]
    temporary, writing = f"{folder}/.incoming-k1ll3d", f"{folder}/.incoming-wr1t1ng"
    (root / temporary).write_bytes(b"half a graph")
    (root / writing).write_bytes(b"being written")
    young.add(writing)
    (root / "sha256" / "NOTES.txt").write_text("not ours: never touched\n")
    for key in files(root):  # everything old: only references may protect it
        if key not in young:
            age(root, key)
    return Store(root, orphan, temporary, young, log.key)


def test_the_dry_run_lists_garbage_with_sizes_and_deletes_nothing(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files(store.root)
    code, out, err = run(capsys, "gc")
    assert code == 0, err
    assert "would delete 2 files (55 B)" in out
    assert "modelfleet gc --delete" in out
    assert store.orphan in out and store.temporary in out
    assert "43 B" in out and "12 B" in out
    assert "2 unreferenced files younger than 1.0 h" in out
    assert files(store.root) == before


def test_json_names_each_file_its_kind_size_and_what_was_kept(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "gc", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["deleted"] is False
    assert {(f["key"], f["kind"], f["size"]) for f in report["files"]} == {
        (store.orphan, "orphan", 43),
        (store.temporary, "temporary", 12),
    }
    assert all(f["age_s"] >= 7000 for f in report["files"])
    assert report["size"] == 55
    # adder:1's graph (its source too) and sample, an output and a manifest for each of the
    # 2 cached steps, 1 job log
    assert report["kept"] == {"referenced": 7, "young": 2, "undated": 0}


def test_delete_removes_only_the_garbage_and_everything_referenced_still_works(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files(store.root)
    code, out, _ = run(capsys, "gc", "--delete")
    assert code == 0
    assert "deleted 2 files (55 B)" in out
    assert set(before) - set(files(store.root)) == {store.orphan, store.temporary}
    settings = load_settings()
    with Registry.open(settings) as reg:
        version = reg.get("adder:1")
        for artifact in version.artifacts:
            assert reg.read_artifact(version, artifact.role)
        report = run_pipeline(PIPELINE, settings=settings, registry=reg, say=lambda _: None)
        assert [s.status for s in report.steps] == ["cached", "cached"]
        sha = store.job_log.rsplit("/", 1)[1]
        assert reg.artifacts.get_bytes(store.job_log, sha) == b"step 1 ok\n"
    code, out, _ = run(capsys, "gc", "--delete")
    assert code == 0 and "deleted 0 files" in out


def test_an_old_orphan_stored_again_by_a_registration_is_young_again(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    with Registry.open(load_settings()) as reg:
        reg.artifacts.put_bytes(b"a graph whose version row was never written")
    _, out, _ = run(capsys, "gc", "--json")
    assert [f["key"] for f in json.loads(out)["files"]] == [store.temporary]


def test_a_shorter_age_includes_recent_files_but_not_below_a_safe_floor(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in store.young:
        age(store.root, key, time.time() - 120)
    _, out, _ = run(capsys, "gc", "--json", "--min-age", "90")
    assert len(json.loads(out)["files"]) == 4
    before = files(store.root)
    code, out, err = run(capsys, "gc", "--delete", "--min-age", "5")
    assert code == 1 and out == ""
    assert err.startswith("error: minimum age 5 s is too short")
    assert len(err.strip().splitlines()) == 1
    assert files(store.root) == before


def test_an_s3_store_is_collected_as_far_as_its_listing_allows(s3_settings: Settings) -> None:
    import s3fs

    with Registry.open(s3_settings) as reg:
        version = mf.register(sum_graph(), name="adder", registry=reg)
        orphan = reg.artifacts.put_bytes(b"left by a killed registration")
        # Objects cannot be back-dated on S3: look at the store from two hours on instead.
        later = time.time() + 2 * 3600
        assert collect_garbage(reg).garbage == ()  # everything is young now
        found = collect_garbage(reg, now=later)
        assert [(g.key, g.kind) for g in found.garbage] == [(orphan.key, "orphan")]
        assert found.referenced == 1  # the graph is its own source
        deleted = collect_garbage(reg, delete=True, now=later)
        assert deleted.deleted and deleted.size == len(b"left by a killed registration")
        fs = s3fs.S3FileSystem(**s3_settings.artifacts_options)
        assert not fs.exists(s3_settings.artifacts.removeprefix("s3://") + "/" + orphan.key)
        assert reg.read_artifact(version, "onnx")
        assert collect_garbage(reg, now=later).garbage == ()
