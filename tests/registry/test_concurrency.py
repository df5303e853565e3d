"""Two processes registering the same name at once never share a number or lose a version."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

from modelfleet.registry import Registry
from tests.conftest import make_settings

PER_PROCESS = 12


def _register_many(home: str, db_url: str, worker: int, barrier: Any, out: Any) -> None:
    import modelfleet as mf
    from tests.models import sum_graph

    settings = make_settings(home, db_url=db_url)
    graph = sum_graph()
    numbers = []
    with Registry.open(settings) as reg:
        barrier.wait()
        for i in range(PER_PROCESS):
            version = mf.register(
                graph, name="contended", tags={"worker": str(worker), "i": str(i)}, registry=reg
            )
            numbers.append(version.version)
    out.put((worker, numbers))


def test_concurrent_registration_gets_distinct_dense_numbers(db_url: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    # Open once first so both workers race on registration, not on schema creation.
    Registry.open(make_settings(tmp_path / "home", db_url=db_url)).close()
    procs = [
        ctx.Process(target=_register_many, args=(str(tmp_path / "home"), db_url, w, barrier, out))
        for w in (1, 2)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    got = sorted(results[1] + results[2])
    assert got == list(range(1, 2 * PER_PROCESS + 1))
    with Registry.open(make_settings(tmp_path / "home", db_url=db_url)) as reg:
        stored = reg.versions("contended")
    assert [v.version for v in stored] == got
    seen = {(v.tags["worker"], v.tags["i"]) for v in stored}
    assert len(seen) == 2 * PER_PROCESS  # every registration landed exactly once


def _open_fresh(home: str, db_url: str, barrier: Any) -> None:
    barrier.wait()
    Registry.open(make_settings(home, db_url=db_url)).close()


def test_two_processes_can_create_the_schema_at_once(db_url: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_open_fresh, args=(str(tmp_path / "home"), db_url, barrier))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
